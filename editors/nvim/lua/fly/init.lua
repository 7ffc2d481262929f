-- Neovim support for the Fly configuration language (Polar Gosling).
--
--   require('fly').setup({
--     cmd = 'fly',            -- the fly binary (name on PATH or full path)
--     args = {},              -- extra arguments after `lsp`
--     root_markers = { 'Eggs', 'Jobs', 'UF', '.git' },
--   })
--
-- setup() starts (or reuses) the `fly lsp` client for every buffer whose
-- filetype is `fly`. Requires Neovim 0.10 or newer (vim.fs.root).
local M = {}

local defaults = {
  cmd = 'fly',
  args = {},
  root_markers = { 'Eggs', 'Jobs', 'UF', '.git' },
}

M.options = vim.deepcopy(defaults)

local warned_missing = false

local function root_dir(bufnr)
  local root = vim.fs.root(bufnr, M.options.root_markers)
  if root then
    return root
  end
  local name = vim.api.nvim_buf_get_name(bufnr)
  if name ~= '' then
    return vim.fs.dirname(name)
  end
  return vim.uv.cwd()
end

--- Starts or attaches the fly language server for buffer `bufnr`.
function M.start(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and vim.api.nvim_get_current_buf() or bufnr
  local cmd = M.options.cmd or 'fly'
  if vim.fn.executable(cmd) ~= 1 then
    if not warned_missing then
      warned_missing = true
      vim.notify(
        ('fly: language server binary %q not found; install it with `cargo install --path .` '
          .. 'from the Polar Gosling repository or pass setup({ cmd = "/path/to/fly" })'):format(cmd),
        vim.log.levels.WARN
      )
    end
    return nil
  end
  local full_cmd = { cmd, 'lsp' }
  vim.list_extend(full_cmd, M.options.args or {})
  return vim.lsp.start({
    name = 'fly',
    cmd = full_cmd,
    root_dir = root_dir(bufnr),
  }, { bufnr = bufnr })
end

--- Stops the fly clients and starts them again for every open fly buffer.
function M.restart()
  local clients = vim.lsp.get_clients({ name = 'fly' })
  for _, client in ipairs(clients) do
    client:stop()
  end
  vim.wait(2000, function()
    for _, client in ipairs(clients) do
      if not client:is_stopped() then
        return false
      end
    end
    return true
  end, 20)
  warned_missing = false
  for _, buf in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_is_loaded(buf) and vim.bo[buf].filetype == 'fly' then
      M.start(buf)
    end
  end
end

local function configure_buffer(bufnr)
  vim.bo[bufnr].commentstring = '# %s'
  M.start(bufnr)
end

function M.setup(opts)
  M.options = vim.tbl_deep_extend('force', vim.deepcopy(defaults), opts or {})
  -- Lists are replaced, not merged.
  if opts and opts.root_markers then
    M.options.root_markers = opts.root_markers
  end
  if opts and opts.args then
    M.options.args = opts.args
  end
  warned_missing = false

  -- In case ftdetect/ was not sourced (e.g. lazy loading).
  vim.filetype.add({ extension = { fly = 'fly' } })

  local group = vim.api.nvim_create_augroup('fly', { clear = true })
  vim.api.nvim_create_autocmd('FileType', {
    group = group,
    pattern = 'fly',
    desc = 'Start the fly language server',
    callback = function(args)
      configure_buffer(args.buf)
    end,
  })

  -- Buffers that were already open when setup() ran.
  for _, buf in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_is_loaded(buf) and vim.bo[buf].filetype == 'fly' then
      configure_buffer(buf)
    end
  end
end

return M
