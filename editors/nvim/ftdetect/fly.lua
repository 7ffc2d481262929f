-- Polar Gosling's Fly configuration language: *.fly files.
vim.filetype.add({ extension = { fly = 'fly' } })
