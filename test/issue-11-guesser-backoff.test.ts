/**
 * Issue #11, defect 3 (second half): the back-off after a failed authentication
 * used to be one delay shared by every peer and never reset, so one wrong guess
 * every 30 s stalled every sender. Now each address has its own failure count and
 * its own exponentially growing delay; other addresses are served at once, a
 * success clears the count, and quiet time forgets it.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { isFerryError } from '../src/core/errors.js';
import { ListenerGuard } from '../src/modes/recv.js';
import { establishChannel } from '../src/secure/channel.js';
import { cleanupTmpDirs, compareTrees, makeTree, tmpDir } from './support/tree.js';
import { connectFrom, sendTree, startListener, until, within } from './support/listener.js';

after(cleanupTmpDirs);

/** A full client handshake with a wrong secret from `localAddress`. */
async function wrongSecret(port: number, localAddress: string): Promise<unknown> {
  const sock = await connectFrom(port, localAddress);
  try {
    await establishChannel(sock, { role: 'client', secret: 'not-the-secret-at-all', ktls: 'off', handshakeTimeoutMs: 120_000 });
    return null;
  } catch (e) {
    return e;
  } finally {
    sock.destroy();
  }
}

test("a guesser's wrong secrets slow the guesser, not a legitimate sender from another address", async () => {
  const root = await tmpDir('ferry-issue11-');
  const src = path.join(root, 'src');
  const dst = path.join(root, 'dst');
  await makeTree(src, { 'a.txt': 'aaaa', 'sub/b.txt': 'bb' });
  const l = await startListener(dst, { authBackoffMs: 60_000 });
  try {
    const first = await wrongSecret(l.port, '127.0.0.3');
    assert.ok(isFerryError(first, 'FERRY_E_AUTH'), String(first));
    await until(() => l.warnings.some((w) => /failed attempt 1/.test(w)), 5_000, 'the failure being counted');
    // The guesser tries again: held back for a minute.
    let secondSettled = false;
    const second = wrongSecret(l.port, '127.0.0.3').finally(() => (secondSettled = true));
    // A legitimate sender from 127.0.0.1 meanwhile is served at once (the old shared
    // back-off made it wait the whole minute, past its handshake deadline).
    const r = await within(sendTree(`${src}/`, l.port), 20_000, 'the legitimate transfer');
    assert.equal(r.summary.committed, 2);
    assert.deepEqual(await compareTrees(src, dst), []);
    assert.equal(secondSettled, false, "the guesser's second attempt is still waiting");
    await l.stop();
    const e = await within(second, 5_000, 'the held guess ending when recv stops');
    assert.ok(isFerryError(e), String(e));
  } finally {
    await l.stop();
  }
});

test('per-address back-off: doubles per failure up to the cap, other addresses unaffected, reset by a success, forgotten after quiet time', () => {
  const g = new ListenerGuard({ authBackoffMs: 1000, authBackoffMaxMs: 8000, authFailureMemoryMs: 60_000 });
  const t = 1_000_000;
  assert.deepEqual([1, 2, 3, 4, 5].map((i) => g.failed('10.0.0.9', t + i)), [1000, 2000, 4000, 8000, 8000]);
  assert.equal(g.failed('10.0.0.7', t), 1000, 'another address starts from the beginning');
  g.succeeded('10.0.0.9', t + 10);
  assert.equal(g.failed('10.0.0.9', t + 20), 1000, 'a success clears the count');
  assert.equal(g.failed('10.0.0.7', t + 60_001), 1000, 'a minute without failures forgets them');
  assert.equal(g.tracked, 2);
});

test('per-address and global caps on unauthenticated connections; eviction only of waiting ones', async () => {
  const g = new ListenerGuard({ maxHandshakesPerAddress: 1, maxPendingPerAddress: 3, maxPendingHandshakes: 4 });
  assert.deepEqual(['a', 'a', 'a', 'a'].map((k) => g.admit(k, 0)), ['ok', 'ok', 'ok', 'address']);
  assert.equal(g.admit('b', 0), 'ok');
  // Full. 'a' holds 3 but none has a turn yet: a newcomer may displace one of them.
  assert.deepEqual(g.admit('c', 0), { evict: 'a' });
  const never = new Promise<void>(() => undefined);
  const endA1 = await g.turn('a', never);
  let second = false;
  const a2 = g.turn('a', never).then((end) => ((second = true), end));
  await new Promise((r) => setImmediate(r));
  assert.equal(second, false, 'one handshake at a time for this address');
  endA1();
  const endA2 = await a2;
  endA2();
  g.release('a', 0);
  assert.equal(g.admit('c', 0), 'ok');
  for (const k of ['a', 'a', 'b', 'c']) g.release(k, 0);
  assert.equal(g.pending, 0);
  assert.equal(g.tracked, 0, 'idle addresses without failures are not remembered');
});

test('remembered addresses are bounded', () => {
  const g = new ListenerGuard();
  for (let i = 0; i < 10_000; i++) g.failed(`10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`, i);
  assert.ok(g.tracked <= 4096, String(g.tracked));
});
