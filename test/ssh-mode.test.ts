/**
 * The scp-like mode (issue #13) end to end: a real sshd on a loopback port with a
 * throw-away host key and user key (test/support/sshd.ts), the real `ssh` client, and
 * this worktree's bin/ferry as the remote ferry (--remote-ferry).
 *
 * The fallback is forced with the FERRY_TEST_SSH_DIRECT hook (the local side dials a
 * closed port instead of the one the remote reported), which is what a firewall that
 * lets only ssh through looks like from the local side.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import { parseOperand } from '../src/cli/operands.js';
import { splitCommand } from '../src/modes/ssh.js';
import { startSshd, type Sshd } from './support/sshd.js';
import { findTool, isCI } from './support/tools.js';
import { lastJson } from './support/net-harness.js';
import { FERRY_BIN, cleanupTmpDirs, compareTrees, makeTree, runFerry, tmpDir, type RunResult, type TreeSpec } from './support/tree.js';

after(cleanupTmpDirs);

describe('operands: rsync rule', () => {
  test('a colon before the first slash is remote; ./ and / force local', () => {
    assert.deepEqual(parseOperand('gpu7:/scratch'), { kind: 'remote', user: undefined, host: 'gpu7', path: '/scratch', text: 'gpu7:/scratch' });
    assert.deepEqual(parseOperand('me@gpu7:data/x'), { kind: 'remote', user: 'me', host: 'gpu7', path: 'data/x', text: 'me@gpu7:data/x' });
    assert.equal(parseOperand('user@host:').kind, 'remote');
    assert.equal((parseOperand('user@host:') as { path: string }).path, '');
    assert.deepEqual(parseOperand('./user@host:/x'), { kind: 'local', path: './user@host:/x' });
    assert.deepEqual(parseOperand('/abs/a:b'), { kind: 'local', path: '/abs/a:b' });
    assert.deepEqual(parseOperand('dir/a:b'), { kind: 'local', path: 'dir/a:b' });
    assert.deepEqual(parseOperand('plain'), { kind: 'local', path: 'plain' });
    assert.deepEqual(parseOperand('-'), { kind: 'stdio' });
  });
  test('IPv6 literals in brackets', () => {
    const o = parseOperand('me@[2001:db8::1]:/data') as { host: string; user: string; path: string };
    assert.equal(o.host, '2001:db8::1');
    assert.equal(o.user, 'me');
    assert.equal(o.path, '/data');
    assert.equal((parseOperand('[::1]:x') as { host: string }).host, '::1');
  });
  test('a host that ssh would read as an option, and daemon syntax, are refused', () => {
    assert.throws(() => parseOperand('-oProxyCommand=x:y'), /not a usable host/);
    assert.throws(() => parseOperand('host::module'), /daemon syntax/);
    assert.throws(() => parseOperand('a b:c'), /not a usable host/);
  });
  test('-e splits like rsync', () => {
    assert.deepEqual(splitCommand(`ssh -p 2222 -o 'ProxyCommand=nc %h %p' -i "/k ey"`), ['ssh', '-p', '2222', '-o', 'ProxyCommand=nc %h %p', '-i', '/k ey']);
  });
});

function sshAvailable(): boolean {
  return findTool('sshd') !== undefined && findTool('ssh') !== undefined && findTool('ssh-keygen') !== undefined;
}
const skip = !sshAvailable() && !isCI() ? 'needs sshd, ssh, ssh-keygen' : false;

describe('ssh mode against a real sshd', { skip, timeout: 300_000 }, () => {
  let sshd: Sshd;
  before(async () => {
    sshd = await startSshd();
  });
  after(async () => {
    await sshd?.stop();
  });

  const ferry = (args: string[], env: Record<string, string> = {}): Promise<RunResult> =>
    runFerry(['-e', sshd.sshCommand, '--remote-ferry', FERRY_BIN, '--progress=never', ...args], { env, timeoutMs: 120_000 });
  const host = (p: string): string => `127.0.0.1:${p}`;

  const tree: TreeSpec = {
    'a.txt': 'hello',
    'sub/b.bin': Buffer.alloc(300_000, 7),
    'sub/deeper/c.txt': 'c',
    'empty/': { type: 'dir' },
    'link': { type: 'symlink', target: 'a.txt' },
  };

  test('push and pull a tree over the direct channel, -P 1 and -P 2', async () => {
    const base = await tmpDir();
    const src = path.join(base, 'src');
    await makeTree(src, tree);
    for (const p of ['1', '2']) {
      const dst = path.join(base, `pushed${p}`);
      const r = await ferry(['-P', p, '--json', src, host(dst)]);
      assert.equal(r.code, 0, r.stderr);
      const j = lastJson(r.stdout);
      assert.equal(j['via'], 'tcp');
      assert.equal(j['cipher'], 'aes-128-gcm');
      assert.equal(j['streams'], Number(p));
      assert.deepEqual(await compareTrees(src, path.join(dst, 'src')), []);
      assert.doesNotMatch(r.stderr, /over the ssh connection/);

      const pulled = path.join(base, `pulled${p}`);
      const q = await ferry(['-P', p, '--json', host(`${src}/`), pulled]);
      assert.equal(q.code, 0, q.stderr);
      assert.equal(lastJson(q.stdout)['via'], 'tcp');
      assert.equal(lastJson(q.stdout)['streams'], Number(p));
      assert.deepEqual(await compareTrees(src, pulled), []);
    }
  });

  test('several sources, single files, the trailing-slash rule, `ferry copy` form', async () => {
    const base = await tmpDir();
    await makeTree(path.join(base, 'one'), { 'x.txt': 'x', 'd/y.txt': 'y' });
    await makeTree(path.join(base, 'two'), { 'z.txt': 'z' });
    await fsp.writeFile(path.join(base, 'single.txt'), 'single');
    const dst = path.join(base, 'dst');
    const r = await ferry([path.join(base, 'one'), `${path.join(base, 'two')}/`, path.join(base, 'single.txt'), host(dst)]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await fsp.readFile(path.join(dst, 'one/d/y.txt'), 'utf8'), 'y');
    assert.equal(await fsp.readFile(path.join(dst, 'z.txt'), 'utf8'), 'z');
    assert.equal(await fsp.readFile(path.join(dst, 'single.txt'), 'utf8'), 'single');

    const pulled = path.join(base, 'pulled');
    const q = await runFerry(['copy', '-e', sshd.sshCommand, '--remote-ferry', FERRY_BIN, host(path.join(base, 'one')), host(path.join(base, 'single.txt')), pulled]);
    assert.equal(q.code, 0, q.stderr);
    assert.equal(await fsp.readFile(path.join(pulled, 'one/x.txt'), 'utf8'), 'x');
    assert.equal(await fsp.readFile(path.join(pulled, 'single.txt'), 'utf8'), 'single');

    // rsync: `SRC/.` and `.` copy the contents too.
    const dot = await ferry([`${path.join(base, 'one')}/.`, host(path.join(base, 'dot'))]);
    assert.equal(dot.code, 0, dot.stderr);
    assert.equal(await fsp.readFile(path.join(base, 'dot/x.txt'), 'utf8'), 'x');
    const cwdDot = await runFerry(['-e', sshd.sshCommand, '--remote-ferry', FERRY_BIN, '.', host(path.join(base, 'cwddot'))], { cwd: path.join(base, 'two') });
    assert.equal(cwdDot.code, 0, cwdDot.stderr);
    assert.equal(await fsp.readFile(path.join(base, 'cwddot/z.txt'), 'utf8'), 'z');

    const missing = await ferry([host(path.join(base, 'nope')), path.join(base, 'p2')]);
    assert.equal(missing.code, 2, missing.stderr);
    assert.match(missing.stderr, /127\.0\.0\.1: .*nope.*does not exist/);
  });

  test("one file: scp's rename rule, both ways (like ferry copy)", async () => {
    const base = await tmpDir();
    const f = path.join(base, 'a.txt');
    await fsp.writeFile(f, 'A');
    await fsp.mkdir(path.join(base, 'existing'));
    for (const [dst, expect] of [
      [path.join(base, 'renamed.txt'), path.join(base, 'renamed.txt')],
      [path.join(base, 'existing'), path.join(base, 'existing/a.txt')],
      [`${path.join(base, 'newdir')}/`, path.join(base, 'newdir/a.txt')],
    ] as const) {
      const r = await ferry([f, host(dst)]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(await fsp.readFile(expect, 'utf8'), 'A', dst);
      const back = dst.endsWith('/') ? path.join(base, 'back-dir') + '/' : path.join(base, `back-${path.basename(dst)}`);
      const q = await ferry([host(expect), back]);
      assert.equal(q.code, 0, q.stderr);
      const got = back.endsWith('/') ? path.join(back, 'a.txt') : back;
      assert.equal(await fsp.readFile(got, 'utf8'), 'A', back);
    }
    // Into an existing local directory: keeps its name.
    const q = await ferry(['--via-ssh', host(f), path.join(base, 'existing')]);
    assert.equal(q.code, 0, q.stderr);
    assert.equal(await fsp.readFile(path.join(base, 'existing/a.txt'), 'utf8'), 'A');
  });

  test('an IPv6 literal in brackets: ssh reaches [::1], the data channel dials [::1]', async (t) => {
    const v6 = await startSshd({ extraConfig: ['ListenAddress ::1'] }).catch(() => null);
    if (v6 === null) {
      if (isCI()) throw new Error('sshd could not listen on ::1');
      t.skip('no IPv6 loopback');
      return;
    }
    try {
      const base = await tmpDir();
      await makeTree(path.join(base, 'src'), { 'a.txt': 'six' });
      const r = await runFerry(['-e', v6.sshCommand, '--remote-ferry', FERRY_BIN, '-v', '--json', path.join(base, 'src'), `root@[::1]:${path.join(base, 'dst')}`]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(lastJson(r.stdout)['via'], 'tcp');
      assert.match(r.stderr, /\[::1\]:\d+/);
      assert.equal(await fsp.readFile(path.join(base, 'dst/src/a.txt'), 'utf8'), 'six');
      const q = await runFerry(['-e', v6.sshCommand, '--remote-ferry', FERRY_BIN, `[::1]:${path.join(base, 'src')}/`, path.join(base, 'back')]);
      assert.equal(q.code, 0, q.stderr);
      assert.equal(await fsp.readFile(path.join(base, 'back/a.txt'), 'utf8'), 'six');
    } finally {
      await v6.stop();
    }
  });

  test('options reach the remote sender: --delete, --exclude, --dry-run, --checksum', async () => {
    const base = await tmpDir();
    const src = path.join(base, 'src');
    await makeTree(src, { 'keep.txt': 'k', 'skip.log': 'l' });
    const dst = path.join(base, 'dst');
    await makeTree(dst, { 'extra.txt': 'e' });
    const dry = await ferry(['-n', '--delete', `${host(src)}/`, dst]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.equal(existsSync(path.join(dst, 'keep.txt')), false);
    assert.equal(existsSync(path.join(dst, 'extra.txt')), true);
    const r = await ferry(['--delete', '--checksum', '--exclude', '*.log', `${host(src)}/`, dst]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(existsSync(path.join(dst, 'keep.txt')), true);
    assert.equal(existsSync(path.join(dst, 'skip.log')), false);
    assert.equal(existsSync(path.join(dst, 'extra.txt')), false);
  });

  test('no direct path: falls back to carrying the channel over ssh, and says so once; --via-ssh forces it', async () => {
    const base = await tmpDir();
    const src = path.join(base, 'src');
    await makeTree(src, tree);
    const closed = { FERRY_TEST_SSH_DIRECT: '127.0.0.1:1' };
    const r = await ferry(['--json', '-P', '3', src, host(path.join(base, 'fb'))], closed);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(lastJson(r.stdout)['via'], 'ssh');
    assert.equal(r.stderr.match(/carrying the data over the ssh connection instead/g)?.length, 1, r.stderr);
    assert.deepEqual(await compareTrees(src, path.join(base, 'fb/src')), []);

    // An address nothing answers (TEST-NET-1): the connect timeout decides.
    const t0 = Date.now();
    const u = await ferry(['--json', '--connect-timeout', '700', src, host(path.join(base, 'unroutable'))], { FERRY_TEST_SSH_DIRECT: '192.0.2.1:9' });
    assert.equal(u.code, 0, u.stderr);
    assert.equal(lastJson(u.stdout)['via'], 'ssh');
    assert.ok(Date.now() - t0 < 60_000);
    assert.deepEqual(await compareTrees(src, path.join(base, 'unroutable/src')), []);

    const q = await ferry(['--json', host(`${src}/`), path.join(base, 'fbpull')], closed);
    assert.equal(q.code, 0, q.stderr);
    assert.equal(lastJson(q.stdout)['via'], 'ssh');
    assert.deepEqual(await compareTrees(src, path.join(base, 'fbpull')), []);

    for (const [args, out] of [
      [['--via-ssh', '--json', src, host(path.join(base, 'vs'))], path.join(base, 'vs/src')],
      [['--via-ssh', '--json', host(`${src}/`), path.join(base, 'vspull')], path.join(base, 'vspull')],
    ] as const) {
      const v = await ferry([...args]);
      assert.equal(v.code, 0, v.stderr);
      assert.equal(lastJson(v.stdout)['via'], 'ssh');
      // Inside ssh the frames go without ferry's own records (issue #13; SECURITY.md).
      assert.equal(lastJson(v.stdout)['cipher'], 'none inside ssh');
      assert.doesNotMatch(v.stderr, /direct connection/);
      assert.deepEqual(await compareTrees(src, out), []);
    }
  });

  test('hostile names (spaces, quotes, backticks, $(), ;, newlines, leading -) arrive intact and run nothing', async () => {
    const base = await tmpDir();
    const sentinel = path.join(base, 'PWNED');
    const evil = [
      'with space',
      `quote'single`,
      'quote"double',
      `back\`touch ${sentinel}\`tick`,
      `dollar$(touch ${sentinel})`,
      `semi;touch ${sentinel};`,
      'new\nline',
      '-leading-dash',
      '--delete',
    ];
    const spec: TreeSpec = {};
    for (const n of evil) spec[`${n}/${n}.txt`] = n;
    const srcDir = path.join(base, `src $(touch ${sentinel}) 'x'`);
    await makeTree(srcDir, spec);
    const dst = path.join(base, `dst; touch ${sentinel}; \`touch ${sentinel}\` -rf`);
    const r = await ferry([srcDir, host(dst)]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await compareTrees(srcDir, path.join(dst, path.basename(srcDir))), []);
    const pulled = path.join(base, 'pulled');
    const q = await ferry([host(`${srcDir}/`), pulled]);
    assert.equal(q.code, 0, q.stderr);
    assert.deepEqual(await compareTrees(srcDir, pulled), []);
    assert.equal(existsSync(sentinel), false, 'a name was run as a command');
  });

  test('missing remote ferry: a clear error that says how to install it', async () => {
    const base = await tmpDir();
    await makeTree(path.join(base, 'src'), { 'a': 'a' });
    const r = await runFerry(['-e', sshd.sshCommand, '--remote-ferry', '/nonexistent/ferry', path.join(base, 'src'), host(path.join(base, 'dst'))]);
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, /FERRY_E_SSH: 127\.0\.0\.1: ferry is not installed there/);
    assert.match(r.stderr, /--remote-ferry PATH/);
    assert.equal(existsSync(path.join(base, 'dst')), false);
  });

  test('versions are checked first; a chatty login script does not break the bootstrap', async () => {
    const base = await tmpDir();
    await makeTree(path.join(base, 'src'), { 'a': 'a' });
    const chatty = path.join(base, 'chatty-ferry');
    await fsp.writeFile(chatty, `#!/bin/sh\necho 'Welcome to gpu7'\nexec '${FERRY_BIN}' "$@"\n`, { mode: 0o755 });
    const r = await runFerry(['-e', sshd.sshCommand, '--remote-ferry', chatty, path.join(base, 'src'), host(path.join(base, 'dst'))]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /ferry: 127\.0\.0\.1: Welcome to gpu7/);
    assert.equal(await fsp.readFile(path.join(base, 'dst/src/a'), 'utf8'), 'a');

    const future = path.join(base, 'future-ferry');
    await fsp.writeFile(future, `#!/bin/sh\necho '{"ferry":"server","protocol":99,"version":"9.9.9"}'\ncat >/dev/null\n`, { mode: 0o755 });
    const v = await runFerry(['-e', sshd.sshCommand, '--remote-ferry', future, path.join(base, 'src'), host(path.join(base, 'dst2'))]);
    assert.equal(v.code, 4, v.stderr);
    assert.match(v.stderr, /FERRY_E_VERSION: 127\.0\.0\.1 runs ferry 9\.9\.9 .*install the same version/);
  });

  test("ssh authentication failure: ssh's reason and a non-zero exit", async () => {
    const base = await tmpDir();
    await makeTree(path.join(base, 'src'), { 'a': 'a' });
    const rsh = sshd.sshCommand.replace(/-i \S+/, `-i ${path.join(base, 'no-such-key')}`);
    const r = await runFerry(['-e', rsh, '--remote-ferry', FERRY_BIN, path.join(base, 'src'), host(path.join(base, 'dst'))]);
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, /Permission denied/);
    assert.match(r.stderr, /FERRY_E_SSH: ssh to 127\.0\.0\.1 failed/);
  });

  test('remote output is cleaned of control characters and named after the host', async () => {
    const base = await tmpDir();
    await makeTree(path.join(base, 'src'), { 'a': 'a' });
    const r = await runFerry(['-e', sshd.sshCommand, '--remote-ferry', '/no/such\x1b[31m', path.join(base, 'src'), host(path.join(base, 'dst'))]);
    assert.notEqual(r.code, 0);
    assert.doesNotMatch(r.stderr, /\x1b/);
    assert.match(r.stderr, /ferry: 127\.0\.0\.1: /);
  });

  /** Run the CLI through sh so that stdin/stdout can be pipes. */
  const shell = (cmd: string, env: Record<string, string> = {}): Promise<RunResult> =>
    new Promise((resolve, reject) => {
      const c = spawn('sh', ['-c', cmd], { env: { ...process.env, NO_COLOR: '1', F: FERRY_BIN, RSH: sshd.sshCommand, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      c.stdout.setEncoding('latin1').on('data', (d: string) => (stdout += d));
      c.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      c.on('error', reject);
      c.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
    });

  test('streams: stdin to a remote file, a remote file to stdout (direct and over ssh)', async () => {
    const base = await tmpDir();
    const data = Buffer.alloc(3 << 20);
    for (let i = 0; i < data.length; i += 4) data.writeUInt32LE((i * 2654435761) >>> 0, i);
    const input = path.join(base, 'input.bin');
    await fsp.writeFile(input, data);
    for (const via of ['', '--via-ssh']) {
      const out = path.join(base, `out${via}.bin`);
      const r = await shell(`cat "${input}" | "$F" -e "$RSH" --remote-ferry "$F" ${via} - 127.0.0.1:"${out}"`);
      assert.equal(r.code, 0, r.stderr);
      assert.ok((await fsp.readFile(out)).equals(data));
      const q = await shell(`"$F" -e "$RSH" --remote-ferry "$F" ${via} 127.0.0.1:"${out}" - | sha256sum`);
      assert.equal(q.code, 0, q.stderr);
      const { createHash } = await import('node:crypto');
      assert.equal(q.stdout.split(' ')[0], createHash('sha256').update(data).digest('hex'));
    }
    const dirTarget = await shell(`echo hi | "$F" -e "$RSH" --remote-ferry "$F" - 127.0.0.1:"${base}/"`);
    assert.equal(dirTarget.code, 2, dirTarget.stderr);
    assert.match(dirTarget.stderr, /is a directory/);
    assert.equal(dirTarget.stderr.match(/is a directory/g)?.length, 1, 'said once');
    const missing = await shell(`"$F" -e "$RSH" --remote-ferry "$F" 127.0.0.1:"${base}/nope" - `);
    assert.equal(missing.code, 2, missing.stderr);
  });

  test('streams: a stream cut before its end publishes nothing', async () => {
    const base = await tmpDir();
    const out = path.join(base, 'out.bin');
    // The producer writes 1 MiB, then the local ferry is killed (-9) while it waits for more.
    const c = spawn('sh', ['-c', `(head -c 1048576 /dev/zero; sleep 30) | exec "$F" -e "$RSH" --remote-ferry "$F" - 127.0.0.1:"${out}"`], {
      env: { ...process.env, F: FERRY_BIN, RSH: sshd.sshCommand },
      stdio: 'ignore',
      detached: true,
    });
    const deadline = Date.now() + 30_000;
    for (;;) {
      const temps = (await fsp.readdir(base)).filter((f) => f.endsWith('.part'));
      if (temps.length > 0 && (await fsp.stat(path.join(base, temps[0]!))).size >= 1 << 20) break;
      assert.ok(Date.now() < deadline, 'the stream never reached the remote');
      await new Promise((r) => setTimeout(r, 20));
    }
    process.kill(-c.pid!, 'SIGKILL');
    // The remote notices the cut and removes its temp file.
    for (;;) {
      const left = await fsp.readdir(base);
      if (left.length === 0) break;
      assert.ok(Date.now() < deadline + 15_000, `left on the remote: ${left.join(', ')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(existsSync(out), false);
  });

  test('kill -9 of the local side mid-transfer, then a re-run resumes with no leftovers on the remote', async () => {
    const base = await tmpDir();
    const src = path.join(base, 'src');
    const big = Buffer.alloc(256 << 20);
    for (let i = 0; i < big.length; i += 4096) big.writeUInt32LE(i, i);
    await makeTree(src, { 'big.bin': big, 'small.txt': 'small' });
    const dst = path.join(base, 'dst');
    const child = spawn(FERRY_BIN, ['-e', sshd.sshCommand, '--remote-ferry', FERRY_BIN, '--progress=never', src, host(dst)], { stdio: 'ignore' });
    const exited = new Promise((r) => child.once('exit', r));
    // Wait until a temp file with data exists under DST, then kill -9.
    const deadline = Date.now() + 60_000;
    let killed = false;
    while (Date.now() < deadline) {
      const files = await fsp.readdir(path.join(dst, 'src')).catch(() => [] as string[]);
      const part = files.find((f) => f.endsWith('.part'));
      if (part) {
        const st = await fsp.stat(path.join(dst, 'src', part)).catch(() => null);
        if (st && st.size > 0) {
          child.kill('SIGKILL');
          killed = true;
          break;
        }
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    await exited;
    assert.ok(killed, 'the transfer finished before it could be interrupted');
    assert.equal(existsSync(path.join(dst, 'src/big.bin')), false, 'no truncated file under its final name');
    // The orphaned remote side notices (stdin EOF, cut TCP) and exits; the re-run resumes.
    const r = await ferry(['--json', src, host(dst)]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await compareTrees(src, path.join(dst, 'src')), []);
    const left = (await fsp.readdir(path.join(dst, 'src'))).filter((f) => f.startsWith('.ferry-'));
    assert.deepEqual(left, [], 'no temp files left');
    assert.ok((lastJson(r.stdout)['resumedBytes'] as number) > 0, `resumed: ${r.stdout}`);
  });
});
