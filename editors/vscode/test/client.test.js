// Client smoke test: loads the compiled extension (out/extension.js) with a
// minimal stand-in for the 'vscode' module, activates it against a real
// `fly lsp`, and checks that the server is started as `<path> lsp`, answers
// `initialize`, and receives workspace/didChangeWatchedFiles from the **/*.fly
// watcher. Skipped when out/ is not compiled or no fly binary is found
// (FLY_BIN, then ../../target/{debug,release}/fly, then PATH).
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const Module = require('node:module');
const cp = require('node:child_process');

const EXTENSION = path.join(__dirname, '..', 'out', 'extension.js');

function findFly() {
  const candidates = [];
  if (process.env.FLY_BIN) candidates.push(process.env.FLY_BIN);
  const repo = path.join(__dirname, '..', '..', '..');
  candidates.push(path.join(repo, 'target', 'debug', 'fly'), path.join(repo, 'target', 'release', 'fly'));
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
    if (dir) candidates.push(path.join(dir, 'fly'));
  }
  return candidates.find((file) => {
    try {
      fs.accessSync(file, fs.constants.X_OK);
      return fs.statSync(file).isFile();
    } catch {
      return false;
    }
  });
}

/** A 'vscode' stand-in: the members the extension uses, inert stubs for the rest. */
function makeVscodeStub(serverPath, events) {
  const handler = {
    get(target, prop) {
      if (prop === 'then' || prop === Symbol.iterator) return undefined;
      if (prop === Symbol.toPrimitive) return () => 1;
      if (!(prop in target)) target[prop] = new Proxy(function () {}, handler);
      return target[prop];
    },
    apply: () => new Proxy(function () {}, handler),
    construct: () => new Proxy(function () {}, handler),
  };
  const anything = new Proxy(function () {}, handler);
  const withFallback = (obj) =>
    new Proxy(obj, {
      get: (t, p) => (p in t ? t[p] : p === 'then' || typeof p === 'symbol' ? undefined : anything[p]),
    });
  const disposable = { dispose() {} };
  return withFallback({
    version: '1.82.0',
    env: withFallback({ language: 'en', appName: 'stub', machineId: 'm', sessionId: 's' }),
    workspace: withFallback({
      workspaceFolders: undefined,
      getConfiguration: () => ({ get: (key, def) => (key === 'server.path' ? serverPath : def) }),
      onDidChangeConfiguration: () => disposable,
      createFileSystemWatcher: (glob) => {
        events.watchers.push(glob);
        const watcher = { dispose() {} };
        for (const name of ['onDidCreate', 'onDidChange', 'onDidDelete']) {
          watcher[name] = (listener) => {
            events.listeners[name] = listener;
            return disposable;
          };
        }
        return watcher;
      },
    }),
    window: withFallback({
      createOutputChannel: () => withFallback({ appendLine: (l) => events.output.push(l), dispose() {} }),
      showErrorMessage: async (m) => {
        events.errors.push(m);
        return undefined;
      },
    }),
    commands: withFallback({
      registerCommand: (id) => {
        events.commands.push(id);
        return disposable;
      },
      executeCommand: async () => undefined,
    }),
  });
}

function loadExtension(serverPath, events) {
  const stub = makeVscodeStub(serverPath, events);
  const originalLoad = Module._load;
  Module._load = function (request, ...rest) {
    if (request === 'vscode') return stub;
    return originalLoad.call(this, request, ...rest);
  };
  const originalSpawn = cp.spawn;
  cp.spawn = function (command, args, ...rest) {
    events.spawned.push([command, args]);
    const child = originalSpawn.call(this, command, args, ...rest);
    const write = child.stdin.write.bind(child.stdin);
    child.stdin.write = (chunk, ...more) => {
      for (const m of String(chunk).matchAll(/"method":"([^"]+)"/g)) events.toServer.push(m[1]);
      return write(chunk, ...more);
    };
    child.stdout.on('data', (data) => {
      if (/"capabilities"/.test(String(data))) events.initialized = true;
    });
    return child;
  };
  delete require.cache[require.resolve(EXTENSION)];
  const ext = require(EXTENSION);
  return {
    ext,
    restore() {
      Module._load = originalLoad;
      cp.spawn = originalSpawn;
    },
  };
}

const newEvents = () => ({
  spawned: [], toServer: [], watchers: [], listeners: {}, output: [], errors: [], commands: [], initialized: false,
});

const compiled = fs.existsSync(EXTENSION);
const fly = findFly();

test('a missing binary gives a clear error and starts nothing', { skip: !compiled && 'run `npm run compile` first' }, async () => {
  const events = newEvents();
  const { ext, restore } = loadExtension('/nonexistent/fly', events);
  try {
    await ext.activate({ subscriptions: [] });
    assert.deepEqual(events.spawned, []);
    assert.equal(events.errors.length, 1);
    assert.match(events.errors[0], /not found/);
    assert.match(events.errors[0], /fly\.server\.path/);
    assert.ok(events.commands.includes('fly.restartServer'));
  } finally {
    await ext.deactivate();
    restore();
  }
});

test(
  'starts `fly lsp`, initializes, forwards watched-file events',
  { skip: (!compiled && 'run `npm run compile` first') || (!fly && 'no fly binary (set FLY_BIN)') },
  async () => {
    const events = newEvents();
    const { ext, restore } = loadExtension(fly, events);
    try {
      await ext.activate({ subscriptions: [] });
      assert.deepEqual(events.errors, []);
      assert.deepEqual(events.spawned, [[fly, ['lsp']]]);
      assert.ok(events.initialized, 'no initialize result from the server');
      assert.deepEqual(events.toServer.slice(0, 2), ['initialize', 'initialized']);
      assert.deepEqual(events.watchers, ['**/*.fly']);
      const file = path.join(require('node:os').tmpdir(), 'Eggs', 'a.fly');
      events.listeners.onDidChange({ scheme: 'file', fsPath: file, path: file, toString: () => `file://${file}` });
      for (let i = 0; i < 50 && !events.toServer.includes('workspace/didChangeWatchedFiles'); i++) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.ok(events.toServer.includes('workspace/didChangeWatchedFiles'), `sent: ${events.toServer.join(', ')}`);
    } finally {
      await ext.deactivate();
      restore();
    }
    assert.ok(events.toServer.includes('shutdown'), 'deactivate did not shut the server down');
  },
);
