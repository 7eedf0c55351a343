/**
 * The ssh mode's start-up is on the user's clock: each side must load only what its
 * part of the transfer needs. A module-load hook (node's `module.register`) records
 * every module each process loads, for a push and a pull of one file through a fake
 * ssh that runs the remote command on this machine: the pushing side never loads the
 * receiver, the pulling side never the sender, `ferry --server` never the client's
 * command line, and nobody loads the curve code of CPace (the ssh mode's handshake is
 * PSK, secure/handshake.ts).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { FERRY_MODULES_MAIN, cleanupTmpDirs, makeTree, runFerry, tmpDir } from './support/tree.js';

after(cleanupTmpDirs);

/** Writes every loaded module's URL, one a line, to $FERRY_TEST_MODLOG. */
const HOOKS = `import { appendFileSync } from 'node:fs';
export async function load(url, context, next) {
  if (process.env.FERRY_TEST_MODLOG) appendFileSync(process.env.FERRY_TEST_MODLOG, url + '\\n');
  return next(url, context);
}
`;

async function loadedModules(direction: 'push' | 'pull'): Promise<{ local: string[]; remote: string[] }> {
  const base = await tmpDir('ferry-startup-');
  await makeTree(path.join(base, 'src'), { 'one.txt': 'one small file' });
  await fsp.mkdir(path.join(base, 'dst'));
  await fsp.writeFile(path.join(base, 'hooks.mjs'), HOOKS);
  await fsp.writeFile(path.join(base, 'register.mjs'), `import { register } from 'node:module';\nregister(${JSON.stringify(`file://${base}/hooks.mjs`)});\n`);
  const localLog = path.join(base, 'local.txt');
  const remoteLog = path.join(base, 'remote.txt');
  // ssh stand-in: drop the destination, run the remote command here (as sshd would, via a shell).
  const rsh = path.join(base, 'fake-ssh');
  await fsp.writeFile(rsh, '#!/bin/sh\nshift\nexec sh -c "$1"\n', { mode: 0o755 });
  const remoteFerry = path.join(base, 'remote-ferry');
  await fsp.writeFile(
    remoteFerry,
    `#!/bin/sh\nFERRY_TEST_MODLOG=${JSON.stringify(remoteLog)} exec ${JSON.stringify(process.execPath)} --import ${JSON.stringify(path.join(base, 'register.mjs'))} ${JSON.stringify(FERRY_MODULES_MAIN)} "$@"\n`,
    { mode: 0o755 },
  );
  const file = path.join(base, 'src', 'one.txt');
  const dst = path.join(base, 'dst');
  const operands = direction === 'push' ? [file, `127.0.0.1:${dst}/`] : [`127.0.0.1:${file}`, `${dst}/`];
  // runFerry starts node on main.js (the modules, not the bundle bin/ferry runs: the hook
  // sees modules); the hook goes in through NODE_OPTIONS for the local side.
  const r = await runFerry(['--progress=never', '-e', rsh, '--remote-ferry', remoteFerry, ...operands], {
    entry: FERRY_MODULES_MAIN,
    env: { NODE_OPTIONS: `--import ${path.join(base, 'register.mjs')}`, FERRY_TEST_MODLOG: localLog },
  });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(await fsp.readFile(path.join(dst, 'one.txt'), 'utf8'), 'one small file');
  const read = async (f: string): Promise<string[]> => (await fsp.readFile(f, 'utf8')).trim().split('\n');
  return { local: await read(localLog), remote: await read(remoteLog) };
}

function has(mods: string[], suffix: string): boolean {
  return mods.some((m) => m.endsWith(suffix) || m.includes(`/node_modules/${suffix}/`));
}

test('ssh start-up: a push loads the sender locally and only the receiver remotely, no CPace', async () => {
  const { local, remote } = await loadedModules('push');
  assert.ok(has(local, '/modes/send.js') && has(remote, '/modes/recv.js'), 'the sanity check: the hook saw the session modules');
  for (const m of ['/modes/recv.js', '/transfer/receiver.js', '/secure/cpace.js', '@noble/curves']) assert.ok(!has(local, m), `the pushing side loaded ${m}`);
  for (const m of ['/modes/send.js', '/transfer/sender.js', '/secure/cpace.js', '@noble/curves', '/cli/ssh-command.js', '/modes/ssh.js', '/fs/walk.js']) {
    assert.ok(!has(remote, m), `ferry --server (receiving) loaded ${m}`);
  }
});

test('ssh start-up: a pull loads the receiver locally and only the sender remotely, no CPace', async () => {
  const { local, remote } = await loadedModules('pull');
  assert.ok(has(local, '/modes/recv.js') && has(remote, '/modes/send.js'), 'the sanity check: the hook saw the session modules');
  for (const m of ['/modes/send.js', '/transfer/sender.js', '/secure/cpace.js', '@noble/curves']) assert.ok(!has(local, m), `the pulling side loaded ${m}`);
  for (const m of ['/modes/recv.js', '/transfer/receiver.js', '/secure/cpace.js', '@noble/curves', '/cli/ssh-command.js', '/modes/ssh.js']) {
    assert.ok(!has(remote, m), `ferry --server (sending) loaded ${m}`);
  }
});
