-- :FlyRestart restarts the fly language server (after require('fly').setup()).
if vim.g.loaded_fly then
  return
end
vim.g.loaded_fly = true

vim.api.nvim_create_user_command('FlyRestart', function()
  require('fly').restart()
end, { desc = 'Restart the fly language server' })
