// VS Code client for the Fly language server (`fly lsp`, over stdio).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';
import {
  LanguageClient,
  LanguageClientOptions,
  ServerOptions,
} from 'vscode-languageclient/node';

let client: LanguageClient | undefined;
let outputChannel: vscode.OutputChannel | undefined;
let watcher: vscode.FileSystemWatcher | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  outputChannel = vscode.window.createOutputChannel('Fly Language Server');
  context.subscriptions.push(outputChannel);

  context.subscriptions.push(
    vscode.commands.registerCommand('fly.restartServer', async () => {
      await stopClient();
      await startClient(context);
      if (client) {
        vscode.window.setStatusBarMessage('Fly language server restarted', 3000);
      }
    }),
    vscode.workspace.onDidChangeConfiguration(async (event) => {
      if (event.affectsConfiguration('fly.server')) {
        await stopClient();
        await startClient(context);
      }
    }),
  );

  await startClient(context);
}

export async function deactivate(): Promise<void> {
  await stopClient();
}

async function startClient(_context: vscode.ExtensionContext): Promise<void> {
  const config = vscode.workspace.getConfiguration('fly');
  const configured = config.get<string>('server.path', 'fly').trim() || 'fly';
  const extraArgs = config.get<string[]>('server.extraArgs', []);

  const command = resolveServerPath(configured);
  if (!command) {
    void reportMissingBinary(configured);
    return;
  }

  // No `transport` field: the client then talks over the child's stdin/stdout
  // without appending `--stdio`, so the command is exactly `<path> lsp [extraArgs]`.
  const serverOptions: ServerOptions = {
    command,
    args: ['lsp', ...extraArgs],
  };

  // The watcher forwards creations, changes and deletions of .fly files
  // (including files not open in an editor) as workspace/didChangeWatchedFiles.
  watcher = vscode.workspace.createFileSystemWatcher('**/*.fly');

  const clientOptions: LanguageClientOptions = {
    documentSelector: [{ scheme: 'file', language: 'fly' }],
    synchronize: { fileEvents: watcher },
    outputChannel,
  };

  const newClient = new LanguageClient('fly', 'Fly Language Server', serverOptions, clientOptions);
  try {
    await newClient.start();
    client = newClient;
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    outputChannel?.appendLine(`Failed to start ${command} lsp: ${message}`);
    if (/ENOENT/.test(message)) {
      void reportMissingBinary(configured);
    } else {
      void vscode.window.showErrorMessage(`Fly: could not start the language server (${command} lsp): ${message}`);
    }
    try {
      await newClient.dispose();
    } catch {
      // already stopped
    }
    watcher?.dispose();
    watcher = undefined;
  }
}

async function stopClient(): Promise<void> {
  const old = client;
  client = undefined;
  watcher?.dispose();
  watcher = undefined;
  if (old) {
    try {
      await old.stop();
    } catch (err) {
      outputChannel?.appendLine(`Error while stopping the language server: ${String(err)}`);
    }
  }
}

/** Expands `~` and `${workspaceFolder}`; looks bare names up on PATH. Returns undefined if not found. */
function resolveServerPath(configured: string): string | undefined {
  let candidate = configured;
  const folder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  if (folder) {
    candidate = candidate.replace(/\$\{workspaceFolder\}/g, folder);
  }
  if (candidate === '~' || candidate.startsWith('~/') || candidate.startsWith('~\\')) {
    candidate = path.join(os.homedir(), candidate.slice(1));
  }

  const hasSeparator = candidate.includes('/') || candidate.includes('\\');
  if (hasSeparator) {
    if (!path.isAbsolute(candidate) && folder) {
      candidate = path.resolve(folder, candidate);
    }
    return isExecutableFile(candidate) ? candidate : undefined;
  }

  const extensions =
    process.platform === 'win32'
      ? ['', ...(process.env.PATHEXT ?? '.EXE;.CMD;.BAT;.COM').split(';').filter(Boolean)]
      : [''];
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) {
      continue;
    }
    for (const ext of extensions) {
      const full = path.join(dir, candidate + ext);
      if (isExecutableFile(full)) {
        return full;
      }
    }
  }
  return undefined;
}

function isExecutableFile(file: string): boolean {
  try {
    if (!fs.statSync(file).isFile()) {
      return false;
    }
    if (process.platform !== 'win32') {
      fs.accessSync(file, fs.constants.X_OK);
    }
    return true;
  } catch {
    return false;
  }
}

async function reportMissingBinary(configured: string): Promise<void> {
  const message =
    `Fly: the language server binary "${configured}" was not found. ` +
    'Install it with `cargo install --path .` from the Polar Gosling repository, ' +
    'or set "fly.server.path" to the full path of the fly binary.';
  outputChannel?.appendLine(message);
  const openSettings = 'Open Settings';
  const choice = await vscode.window.showErrorMessage(message, openSettings);
  if (choice === openSettings) {
    await vscode.commands.executeCommand('workbench.action.openSettings', 'fly.server.path');
  }
}
