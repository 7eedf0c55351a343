/**
 * The ssh bootstrap without sshd: what the local ferry puts on ssh's command line
 * (nothing but `<remote ferry> --server`: no key, no path), what goes on its stdin (the
 * key, inside the request), and how `ferry --server` treats hostile requests.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { parseRequest, SSH_PROTOCOL } from '../src/modes/ssh-bootstrap.js';
import { FERRY_MAIN, cleanupTmpDirs, makeTree, runFerry, tmpDir } from './support/tree.js';

after(cleanupTmpDirs);

test('the key and the paths travel on stdin; ssh gets a fixed remote command', async () => {
  const base = await tmpDir();
  const evil = `x'; touch /tmp/pwned; echo '$(id)`;
  await makeTree(path.join(base, 'src'), { [evil]: 'e' });
  // A fake ssh: records its argv, environment and stdin, then fails like ssh does.
  const fake = path.join(base, 'fake-ssh');
  await fsp.writeFile(
    fake,
    `#!/bin/sh\nfor a in "$@"; do printf '%s\\n' "$a"; done > "${base}/argv"\nenv > "${base}/env"\nhead -n 1 > "${base}/stdin"\nexit 255\n`,
    { mode: 0o755 },
  );
  const r = await runFerry(['-e', `${fake} -p 2222`, '--remote-ferry', '/opt/my ferry/bin/ferry', path.join(base, 'src'), `me@gpu7:/data/${evil}`]);
  assert.equal(r.code, 4, r.stderr);
  assert.match(r.stderr, /FERRY_E_SSH: ssh to gpu7 failed/);
  const argv = (await fsp.readFile(path.join(base, 'argv'), 'utf8')).trimEnd().split('\n');
  assert.deepEqual(argv, ['-p', '2222', 'me@gpu7', `'/opt/my ferry/bin/ferry' --server`]);
  const req = JSON.parse(await fsp.readFile(path.join(base, 'stdin'), 'utf8')) as { key: string; paths: string[]; role: string };
  assert.equal(Buffer.from(req.key, 'base64').length, 32);
  assert.deepEqual(req.paths, [`/data/${evil}`]);
  assert.equal(req.role, 'recv');
  const env = await fsp.readFile(path.join(base, 'env'), 'utf8');
  assert.equal(env.includes(req.key), false, 'the key is not in the environment');
  assert.equal(argv.join(' ').includes(req.key), false);
});

test('parseRequest refuses what a hostile or confused local side might send', () => {
  const good = { protocol: SSH_PROTOCOL, key: Buffer.alloc(32, 1).toString('base64'), role: 'recv', paths: ['dst'], options: {}, via: 'tcp' };
  assert.equal(parseRequest(JSON.stringify(good)).key.length, 32);
  const bad: [unknown, RegExp][] = [
    [{ ...good, protocol: 99 }, /protocol 99/],
    [{ ...good, key: Buffer.alloc(16).toString('base64') }, /32 bytes/],
    [{ ...good, role: 'exec' }, /role/],
    [{ ...good, paths: [] }, /paths/],
    [{ ...good, paths: ['a\0b'] }, /paths/],
    [{ ...good, paths: ['a', 'b'] }, /one path/],
    [{ ...good, via: 'smoke' }, /via/],
    [[1, 2], /not an object/],
  ];
  for (const [v, re] of bad) assert.throws(() => parseRequest(JSON.stringify(v)), re);
  assert.throws(() => parseRequest('{not json'), /not JSON/);
  // Options are clamped, never trusted.
  const o = parseRequest(JSON.stringify({ ...good, options: { streams: 1e9, chunkSize: -1, ktls: 'maybe', excludes: [1, 'x'] } })).req.options;
  assert.equal(o.streams, 1);
  assert.equal(o.chunkSize, 1024 * 1024);
  assert.equal(o.ktls, 'auto');
  assert.deepEqual(o.excludes, ['x']);
});

test('ferry --server: version first, then one error line for a bad request, nothing written', async () => {
  const base = await tmpDir();
  const c = spawn(process.execPath, [FERRY_MAIN, '--server'], { cwd: base, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  c.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  c.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  c.stdin.end(`${JSON.stringify({ protocol: SSH_PROTOCOL, key: Buffer.alloc(32).toString('base64'), role: 'send', paths: ['no-such-dir'], options: {}, via: 'tcp' })}\n`);
  const code = await new Promise<number | null>((r) => c.on('close', r));
  const lines = out.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.equal(lines[0]!['ferry'], 'server');
  assert.equal(lines[0]!['protocol'], SSH_PROTOCOL);
  assert.equal(lines[1]!['code'], 'FERRY_E_SRC_MISSING');
  assert.equal(code, 2);
  assert.equal(err, '', 'already said in the reply, not twice');
  assert.deepEqual(await fsp.readdir(base), []);
  const extra = await runFerry(['--server', 'x']);
  assert.equal(extra.code, 2);
});
