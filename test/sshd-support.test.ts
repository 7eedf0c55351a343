/**
 * The throw-away sshd helper works: it starts, accepts our key, runs a command,
 * and stop() really ends it (the port stops accepting).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { connect } from 'node:net';
import { existsSync } from 'node:fs';
import { requireTools } from './support/tools.js';
import { startSshd } from './support/sshd.js';

test('startSshd: ssh runs a command, stop() closes the port', { timeout: 30_000 }, async (t) => {
  const tools = requireTools(t, 'sshd', 'ssh', 'ssh-keygen');
  if (!tools) return;
  const sshd = await startSshd();
  try {
    const r = spawnSync(tools['ssh']!, [...sshd.sshArgs, sshd.host, 'echo', 'ok'], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.status, 0, `ssh failed: ${r.stderr}`);
    assert.equal(r.stdout.trim(), 'ok');
  } finally {
    await sshd.stop();
  }
  assert.equal(existsSync(sshd.dir), false, 'temp dir removed');
  const refused = await new Promise<boolean>((resolve) => {
    const s = connect({ port: sshd.port, host: '127.0.0.1' });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });
  assert.equal(refused, true, 'port no longer accepts connections');
});
