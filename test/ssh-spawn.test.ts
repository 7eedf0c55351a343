/**
 * The early start of ssh (modes/ssh-spawn.ts): the prespawned child is used only when
 * it runs exactly the argv the ssh mode wants; otherwise it is killed and the right
 * command started, and a child whose start failed is never handed out.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { prespawnSsh, sshArgv, takeSsh } from '../src/modes/ssh-spawn.js';

test('a prespawned child with the same argv is reused', async () => {
  const early = prespawnSsh(['sleep', '30']);
  const c = takeSsh(['sleep', '30']);
  assert.equal(c, early, 'the prespawned child is the one handed out');
  const again = takeSsh(['sleep', '30']);
  assert.notEqual(again.pid, c.pid, 'a child is handed out once');
  c.kill();
  again.kill();
});

test('a prespawned child with another argv is killed and the wanted one started', async () => {
  const early = prespawnSsh(['sleep', '31'])!;
  const c = takeSsh(['sleep', '32']);
  assert.deepEqual(c.spawnargs, ['sleep', '32']);
  await once(early, 'exit'); // killed
  c.kill();
  await once(c, 'exit');
});

test('a prespawned child whose start failed is not handed out', async () => {
  prespawnSsh(['/nonexistent/ferry-test-ssh']);
  await new Promise((r) => setTimeout(r, 100));
  const c = takeSsh(['/nonexistent/ferry-test-ssh']);
  const [err] = (await once(c, 'error')) as [NodeJS.ErrnoException];
  assert.equal(err.code, 'ENOENT', 'the real start reports the failure');
});

test('the remote command is the quoted remote ferry path and --server, nothing else', () => {
  assert.deepEqual(sshArgv(['ssh', '-p', '22'], 'u@h', "/opt/my ferry/bin/ferry"), ['ssh', '-p', '22', 'u@h', "'/opt/my ferry/bin/ferry' --server"]);
});
