// Grammar test: tokenizes Fly lines with the real TextMate engine used by VS Code
// (vscode-textmate + vscode-oniguruma) and checks the scopes of selected tokens.
// Run with `npm test` (node's built-in test runner).
'use strict';

const { test, before } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const vsctm = require('vscode-textmate');
const oniguruma = require('vscode-oniguruma');

const GRAMMAR_PATH = path.join(__dirname, '..', 'syntaxes', 'fly.tmLanguage.json');

let grammar;

before(async () => {
  const wasm = fs.readFileSync(require.resolve('vscode-oniguruma/release/onig.wasm'));
  await oniguruma.loadWASM(wasm.buffer.slice(wasm.byteOffset, wasm.byteOffset + wasm.byteLength));
  const registry = new vsctm.Registry({
    onigLib: Promise.resolve({
      createOnigScanner: (patterns) => new oniguruma.OnigScanner(patterns),
      createOnigString: (s) => new oniguruma.OnigString(s),
    }),
    loadGrammar: async (scopeName) => {
      if (scopeName !== 'source.fly') return null;
      const text = fs.readFileSync(GRAMMAR_PATH, 'utf8');
      return vsctm.parseRawGrammar(text, GRAMMAR_PATH);
    },
  });
  grammar = await registry.loadGrammar('source.fly');
  assert.ok(grammar, 'grammar source.fly did not load');
});

/** Tokenizes `text` (several lines) and returns, per line, [{ text, scopes }]. */
function tokenize(text) {
  let state = vsctm.INITIAL;
  return text.split('\n').map((line) => {
    const result = grammar.tokenizeLine(line, state);
    state = result.ruleStack;
    return result.tokens.map((t) => ({
      text: line.slice(t.startIndex, t.endIndex),
      scopes: t.scopes,
    }));
  });
}

/** Asserts that the first token of `line` whose text is `text` carries `scope`. */
function expectScope(line, text, scope) {
  const token = line.find((t) => t.text === text);
  assert.ok(token, `no token ${JSON.stringify(text)} in ${JSON.stringify(line.map((t) => t.text))}`);
  assert.ok(
    token.scopes.includes(scope),
    `token ${JSON.stringify(text)} has scopes ${token.scopes.join(' ')}, expected ${scope}`,
  );
}

function expectNoScopePrefix(line, text, prefix) {
  const token = line.find((t) => t.text === text);
  assert.ok(token, `no token ${JSON.stringify(text)}`);
  assert.ok(
    !token.scopes.some((s) => s.startsWith(prefix)),
    `token ${JSON.stringify(text)} has scopes ${token.scopes.join(' ')}, expected none starting with ${prefix}`,
  );
}

test('block header: type, labels and brace', () => {
  const [line] = tokenize('egg "my-app" {');
  expectScope(line, 'egg', 'entity.name.type.block.fly');
  expectScope(line, 'my-app', 'string.quoted.double.label.fly');
  expectScope(line, '{', 'punctuation.section.braces.begin.fly');

  const [rule] = tokenize('  rule "a" "b" {}');
  expectScope(rule, 'rule', 'entity.name.type.block.fly');
  expectScope(rule, 'a', 'string.quoted.double.label.fly');
  expectScope(rule, 'b', 'string.quoted.double.label.fly');

  const [oneLine] = tokenize('cloud { provider = "aws" }');
  expectScope(oneLine, 'cloud', 'entity.name.type.block.fly');
  expectScope(oneLine, 'provider', 'variable.other.property.fly');
});

test('attribute name, assignment and values', () => {
  const [line] = tokenize('  concurrent   = 3 # three');
  expectScope(line, 'concurrent', 'variable.other.property.fly');
  expectScope(line, '=', 'keyword.operator.assignment.fly');
  expectScope(line, '3', 'constant.numeric.integer.fly');
  expectScope(line, ' three', 'comment.line.number-sign.fly');

  const [bools] = tokenize('privileged = true');
  expectScope(bools, 'true', 'constant.language.boolean.fly');

  const [map] = tokenize('labels = { team = "ci", "cost-center" = "42" }');
  expectScope(map, 'team', 'variable.other.property.fly');
  expectScope(map, 'cost-center', 'variable.other.property.fly');
  expectScope(map, '42', 'string.quoted.double.fly');
});

test('numbers: negative, float, exponent, malformed', () => {
  const lines = tokenize('offset = -7\nratio = 0.5\nbig = 1.5e3\ntiny = 2E-4\nbad = 10m\nlist = [1, -2.5]');
  expectScope(lines[0], '-7', 'constant.numeric.integer.fly');
  expectScope(lines[1], '0.5', 'constant.numeric.float.fly');
  expectScope(lines[2], '1.5e3', 'constant.numeric.float.fly');
  expectScope(lines[3], '2E-4', 'constant.numeric.float.fly');
  expectScope(lines[4], '10m', 'invalid.illegal.number.fly');
  expectScope(lines[5], '1', 'constant.numeric.integer.fly');
  expectScope(lines[5], '-2.5', 'constant.numeric.float.fly');
  expectNoScopePrefix(lines[5], ' ', 'constant');
});

test('string with ${vars.region} interpolation, escapes and $${', () => {
  const [line] = tokenize('bucket = "runners-${vars.region}\\n\\u2744 $${x} \\q"');
  expectScope(line, 'runners-', 'string.quoted.double.fly');
  expectScope(line, '${', 'punctuation.section.interpolation.begin.fly');
  expectScope(line, 'vars', 'variable.language.fly');
  expectScope(line, 'vars', 'meta.interpolation.fly');
  expectScope(line, '.', 'punctuation.accessor.fly');
  expectScope(line, 'region', 'variable.other.member.fly');
  expectScope(line, '}', 'punctuation.section.interpolation.end.fly');
  expectScope(line, '\\n', 'constant.character.escape.fly');
  expectScope(line, '\\u2744', 'constant.character.escape.fly');
  expectScope(line, '$${', 'constant.character.escape.interpolation.fly');
  expectScope(line, '\\q', 'invalid.illegal.escape.fly');
  expectNoScopePrefix(line, 'x} ', 'meta.interpolation');

  const [env] = tokenize('url = "${ env.GITLAB_URL }"');
  expectScope(env, 'env', 'variable.language.fly');
  expectScope(env, 'GITLAB_URL', 'variable.other.member.fly');

  // An unterminated string ends at the end of its line.
  const lines = tokenize('a = "open\nb = 1');
  expectScope(lines[1], 'b', 'variable.other.property.fly');
});

test('heredoc: start, body with interpolation, end (<<EOT and <<-EOT)', () => {
  const lines = tokenize(
    [
      'script = <<-EOT',
      '    #!/bin/bash',
      '    echo "hello from ${vars.region}" // not a comment',
      '    EOTX',
      '  EOT',
      'after = 1',
    ].join('\n'),
  );
  expectScope(lines[0], '<<-', 'keyword.operator.heredoc.fly');
  expectScope(lines[0], 'EOT', 'keyword.control.heredoc-token.fly');
  expectScope(lines[1], '    #!/bin/bash', 'string.unquoted.heredoc.fly');
  expectNoScopePrefix(lines[1], '    #!/bin/bash', 'comment');
  expectScope(lines[2], 'vars', 'variable.language.fly');
  expectScope(lines[2], 'region', 'variable.other.member.fly');
  expectNoScopePrefix(lines[2], '" // not a comment', 'comment');
  expectScope(lines[3], '    EOTX', 'string.unquoted.heredoc.fly');
  expectScope(lines[4], 'EOT', 'keyword.control.heredoc-token.fly');
  expectNoScopePrefix(lines[4], 'EOT', 'string.unquoted.heredoc');
  expectScope(lines[5], 'after', 'variable.other.property.fly');

  const plain = tokenize(['x = <<END', 'body', 'END', 'y = true'].join('\n'));
  expectScope(plain[0], '<<', 'keyword.operator.heredoc.fly');
  expectScope(plain[1], 'body', 'string.unquoted.heredoc.fly');
  expectScope(plain[2], 'END', 'keyword.control.heredoc-token.fly');
  expectScope(plain[3], 'true', 'constant.language.boolean.fly');
});

test('comments: #, // and /* */ over several lines', () => {
  const lines = tokenize('# a line comment\ncpu = 2 // two\n/* block\n still */ memory = 4096');
  expectScope(lines[0], '#', 'punctuation.definition.comment.fly');
  expectScope(lines[0], ' a line comment', 'comment.line.number-sign.fly');
  expectScope(lines[1], ' two', 'comment.line.double-slash.fly');
  expectScope(lines[2], ' block', 'comment.block.fly');
  expectScope(lines[3], ' still ', 'comment.block.fly');
  expectScope(lines[3], 'memory', 'variable.other.property.fly');

  const [inString] = tokenize('url = "http://x#y"');
  expectScope(inString, 'http://x#y', 'string.quoted.double.fly');
  expectNoScopePrefix(inString, 'http://x#y', 'comment');
});

test('every example .fly file of the repository tokenizes without invalid tokens', () => {
  const root = path.join(__dirname, '..', '..', '..', 'examples');
  const files = [];
  const walk = (dir) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith('.fly')) files.push(full);
    }
  };
  if (fs.existsSync(root)) walk(root);
  for (const file of files) {
    const lines = tokenize(fs.readFileSync(file, 'utf8'));
    lines.forEach((line, i) => {
      for (const token of line) {
        assert.ok(
          !token.scopes.some((s) => s.startsWith('invalid')),
          `${file}:${i + 1}: ${JSON.stringify(token.text)} is ${token.scopes.join(' ')}`,
        );
      }
    });
  }
});
