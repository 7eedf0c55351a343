/**
 * Issue #14: `--version`/`-V` and `--help`/`-h` work on every command, and an unknown
 * command says so instead of failing as a copy. A first word that is no command, no
 * existing path and has no `/` or `:` cannot be uring-sync's `ferry SRC DST`.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { COPY_HELP, HELP } from '../src/cli/help.js';
import { RECV_HELP } from '../src/cli/recv-command.js';
import { SEND_HELP } from '../src/cli/send-command.js';
import { SSH_HELP } from '../src/cli/ssh-command.js';
import { VERSION } from '../src/cli/version.js';
import { cleanupTmpDirs, runFerry, tmpDir } from './support/tree.js';

after(cleanupTmpDirs);

test('-V and --version on every command print the version, exit 0', async () => {
  for (const args of [['-V'], ['--version'], ['copy', '-V'], ['copy', 'a', 'b', '--version'], ['send', '-V'], ['send', '--version'], ['recv', '-V'], ['recv', 'dst', '--listen', '0', '--version'], ['-V', 'host:x', 'y']]) {
    const r = await runFerry(args);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stdout, `ferry ${VERSION}\n`, args.join(' '));
  }
});

test('-h and --help on every command print that command\'s help, exit 0, whatever else is on the line', async () => {
  const cases: [string[], string][] = [
    [['-h'], HELP],
    [['--help'], HELP],
    [['help'], HELP],
    [['copy', '--help'], COPY_HELP],
    [['copy', '--no-such-option', '-h'], COPY_HELP],
    [['send', '-h'], SEND_HELP],
    [['help', 'send'], SEND_HELP],
    [['recv', '--help'], RECV_HELP],
    [['recv', '--bogus', '--help'], RECV_HELP],
    [['host:x', 'y', '-h'], SSH_HELP],
    [['copy', 'a', 'host:x', '--help'], SSH_HELP],
  ];
  for (const [args, text] of cases) {
    const r = await runFerry(args);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stdout, text, args.join(' '));
  }
  // After `--` it is an operand, and the value of an option is a value.
  const r = await runFerry(['copy', '--exclude', '-h', 'nope-src', 'nope-dst']);
  assert.equal(r.code, 2);
  assert.equal(r.stdout, '');
});

test('an unknown command is "unknown command", exit 2; existing paths and operands still copy', async () => {
  const base = await tmpDir();
  const r = await runFerry(['frobnicate', 'a', 'b'], { cwd: base });
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /^ferry: FERRY_E_USAGE: unknown command 'frobnicate'/);
  assert.deepEqual(await fsp.readdir(base), []);
  // A word that exists as a path is uring-sync's SRC DST.
  await fsp.writeFile(path.join(base, 'frobnicate'), 'x');
  const c = await runFerry(['frobnicate', 'copied'], { cwd: base });
  assert.equal(c.code, 0, c.stderr);
  assert.equal(await fsp.readFile(path.join(base, 'copied'), 'utf8'), 'x');
  // With a slash it is a path: the copy's own error.
  const m = await runFerry(['./missing', 'b'], { cwd: base });
  assert.equal(m.code, 2);
  assert.match(m.stderr, /FERRY_E_SRC_MISSING/);
});
