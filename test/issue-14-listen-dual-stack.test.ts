/**
 * Issue #14, "Dishonest output": `--listen PORT` listens on every address of both
 * families (one dual-stack socket, `::` with IPv6-only off) and says so; `--listen
 * ADDR:PORT` and `[v6]:PORT` bind just that address. One receiver serves a sender
 * over ::1 and another over 127.0.0.1.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { recv } from '../src/modes/recv.js';
import { isCI } from './support/tools.js';
import { SECRET } from './support/listener.js';
import { spawnFerry } from './support/net-harness.js';
import { cleanupTmpDirs, makeTree, tmpDir } from './support/tree.js';

after(cleanupTmpDirs);

/** Whether this machine can listen on ::1 (a container may have no IPv6 at all). */
async function hasIpv6Loopback(): Promise<boolean> {
  const srv = net.createServer();
  return new Promise((resolve) => {
    srv.once('error', () => resolve(false));
    srv.listen({ host: '::1', port: 0 }, () => srv.close(() => resolve(true)));
  });
}
const skip = !(await hasIpv6Loopback()) && !isCI() ? 'this machine has no IPv6 loopback (::1)' : false;

test('--listen PORT serves IPv6 and IPv4 senders on one port and says so', { skip, timeout: 120_000 }, async () => {
  const base = await tmpDir('ferry-dual-');
  await makeTree(path.join(base, 'six'), { 'v6.txt': 'over ::1' });
  await makeTree(path.join(base, 'four'), { 'v4.txt': 'over 127.0.0.1' });
  const dst = path.join(base, 'dst');
  const receiver = spawnFerry(['recv', dst, '--listen', '0', '--keep-serving', '--progress=never', '--json'], { FERRY_SECRET: SECRET });
  try {
    const event = await new Promise<Record<string, unknown>>((resolve, reject) => {
      const check = (): void => {
        const line = receiver.stdout().split('\n').find((l) => l.includes('"listening"'));
        if (line) resolve(JSON.parse(line) as Record<string, unknown>);
      };
      receiver.child.stdout!.on('data', check);
      void receiver.done.then((r) => reject(new Error(`recv exited: ${r.code} ${r.stderr}`)));
    });
    assert.equal(event['host'], '::');
    assert.equal(event['scope'], 'dual-stack');
    const port = event['port'] as number;
    assert.match(receiver.stderr(), new RegExp(`listening on \\[::\\]:${port} \\(every IPv6 and IPv4 address\\)`));
    for (const [dir, target] of [['six', `[::1]:${port}`], ['four', `127.0.0.1:${port}`]] as const) {
      const s = spawnFerry(['send', `${path.join(base, dir)}/`, target, '--progress=never'], { FERRY_SECRET: SECRET });
      const r = await s.done;
      assert.equal(r.code, 0, `${target}: ${r.stderr}`);
    }
    assert.equal(await fsp.readFile(path.join(dst, 'v6.txt'), 'utf8'), 'over ::1');
    assert.equal(await fsp.readFile(path.join(dst, 'v4.txt'), 'utf8'), 'over 127.0.0.1');
  } finally {
    receiver.child.kill('SIGTERM');
    await receiver.done;
  }
});

test('an address given binds just that address and family', { skip }, async () => {
  const dst = path.join(await tmpDir('ferry-dual-'), 'dst');
  for (const [host, other] of [['127.0.0.1', '::1'], ['::1', '127.0.0.1'], ['::', '127.0.0.1']] as const) {
    const ac = new AbortController();
    let scope = '';
    const port = await new Promise<number>((resolve, reject) => {
      recv({ dst, host, port: 0, secret: SECRET, ktls: 'off', keepServing: true, maxAuthFailures: 3, preserveSpecial: false, signal: ac.signal, onListening: (_h, p, s) => {
        scope = s;
        resolve(p);
      } }).catch(reject);
    });
    assert.equal(scope, 'address');
    const refused = await new Promise<string>((resolve) => {
      const sock = net.connect({ host: other, port });
      sock.once('connect', () => {
        sock.destroy();
        resolve('connected');
      });
      sock.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
    });
    ac.abort();
    assert.equal(refused, 'ECONNREFUSED', `--listen ${host} accepted a connection to ${other}`);
  }
});
