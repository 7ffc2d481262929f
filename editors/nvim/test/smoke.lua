-- Headless check of the Neovim integration. Run from the repository root:
--   nvim --headless --clean --cmd 'set rtp+=editors/nvim' -c 'luafile editors/nvim/test/smoke.lua'
-- Optional: FLY_BIN=/path/to/fly also checks that `fly lsp` attaches to the buffer.
-- Prints "N passed, M failed" and exits non-zero on failure.
local passed, failed = 0, 0
local function check(name, ok, detail)
  if ok then
    passed = passed + 1
    print('ok   ' .. name)
  else
    failed = failed + 1
    print('FAIL ' .. name .. (detail and (': ' .. tostring(detail)) or ''))
  end
end

local fly_bin = os.getenv('FLY_BIN')
local ok, err = pcall(function()
  require('fly').setup({ cmd = fly_bin or 'fly' })
end)
check('require("fly").setup() loads', ok, err)

local root = vim.fn.tempname()
vim.fn.mkdir(root .. '/Eggs', 'p')
local file = root .. '/Eggs/app.fly'
vim.fn.writefile({
  'egg "app" {',
  '  # a comment',
  '  cpu    = -2',
  '  region = "eu-${vars.region}"',
  '  script = <<-EOT',
  '    echo hi',
  '  EOT',
  '  bad = 10m',
  '}',
}, file)
vim.cmd('syntax on')
vim.cmd.edit(file)
local buf = vim.api.nvim_get_current_buf()

check('filetype is fly', vim.bo[buf].filetype == 'fly', vim.bo[buf].filetype)
check('commentstring is "# %s"', vim.bo[buf].commentstring == '# %s', vim.bo[buf].commentstring)
check('shiftwidth is 2', vim.bo[buf].shiftwidth == 2, vim.bo[buf].shiftwidth)

local function syn(line, col)
  return vim.fn.synIDattr(vim.fn.synID(line, col, 1), 'name')
end
local expect = {
  { 1, 1, 'flyBlockType' },
  { 1, 6, 'flyLabel' },
  { 2, 3, 'flyComment' },
  { 3, 3, 'flyAttribute' },
  { 3, 12, 'flyNumber' },
  { 4, 13, 'flyString' },
  { 4, 17, 'flyInterpDelim' },
  { 4, 19, 'flyInterpRoot' },
  { 5, 12, 'flyHeredocDelim' },
  { 6, 5, 'flyHeredoc' },
  { 7, 3, 'flyHeredocDelim' },
  { 8, 9, 'flyInvalidNumber' },
}
for _, e in ipairs(expect) do
  local got = syn(e[1], e[2])
  check(('syntax at %d:%d is %s'):format(e[1], e[2], e[3]), got == e[3], got)
end

if fly_bin then
  local attached = vim.wait(10000, function()
    return #vim.lsp.get_clients({ bufnr = buf, name = 'fly' }) > 0
  end, 50)
  check('fly lsp attached', attached)
  local client = vim.lsp.get_clients({ bufnr = buf, name = 'fly' })[1]
  check('root_dir is the Nest root', client and client.root_dir == root, client and client.root_dir)
  -- "bad = 10m" is a malformed number (F0007): the server reports it.
  local got = vim.wait(10000, function()
    return #vim.diagnostic.get(buf) > 0
  end, 50)
  check('diagnostics arrive', got)
  if client then
    client:stop()
    vim.wait(3000, function() return client:is_stopped() end, 20)
  end
end

vim.fn.delete(root, 'rf')
print(('%d passed, %d failed'):format(passed, failed))
vim.cmd(failed == 0 and 'qa!' or 'cq!')
