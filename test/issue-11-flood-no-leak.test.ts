/**
 * Issue #11's suite item: 50 connections with wrong secrets and 16 idle sockets
 * while a real transfer runs. The transfer completes, every wrong secret is counted,
 * the idle sockets are dropped at the first-bytes deadline, and the listener (a
 * `--keep-serving` library `recv` in this process) leaks no file descriptors and
 * no memory: the same round run twice more leaves /proc/self/fd exactly as it was,
 * no accepted socket reachable, and the heap (after a full GC) within a few MiB.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { subscribe } from 'node:diagnostics_channel';
import { readdirSync } from 'node:fs';
import { rename } from 'node:fs/promises';
import path from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { isFerryError } from '../src/core/errors.js';
import { establishChannel } from '../src/secure/channel.js';
import { cleanupTmpDirs, compareTrees, makeTree, tmpDir, type TreeSpec } from './support/tree.js';
import { connectFrom, idleSocket, sendTree, startListener, until, type Listener } from './support/listener.js';

after(cleanupTmpDirs);

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const fdCount = (): number => readdirSync('/proc/self/fd').length;

// Every socket the listener accepts, weakly: after the rounds and a full GC none may
// still be reachable (a closed connection must leave nothing behind, not even a
// small object; the heap figure alone cannot see a few KiB per connection).
const accepted: WeakRef<object>[] = [];
subscribe('net.server.socket', (msg) => accepted.push(new WeakRef((msg as { socket: object }).socket)));

async function settledHeap(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
  return process.memoryUsage().heapUsed;
}

/** Wait until the fd count stops changing (closing sockets settle) and return it. */
async function settledFds(): Promise<number> {
  let last = -1;
  let stable = 0;
  for (let i = 0; i < 500 && stable < 20; i++) {
    await new Promise((r) => setTimeout(r, 20));
    const n = fdCount();
    stable = n === last ? stable + 1 : 0;
    last = n;
  }
  return last;
}

async function wrongSecret(port: number, localAddress: string): Promise<unknown> {
  const sock = await connectFrom(port, localAddress);
  try {
    await establishChannel(sock, { role: 'client', secret: 'a-wrong-guess', ktls: 'off', handshakeTimeoutMs: 20_000 });
    return null;
  } catch (e) {
    return e;
  } finally {
    sock.destroy();
  }
}

/** One round: a transfer into a fresh DST while 10 addresses guess 5 times each and 4 more hold 4 idle sockets each. */
async function round(l: Listener, src: string): Promise<void> {
  const failuresBefore = l.warnings.filter((w) => /failed attempt/.test(w)).length;
  const lateBefore = l.warnings.filter((w) => /from 127\.0\.0\.3\d:\d+: no hello within/.test(w)).length;
  const idle = (await Promise.all([20, 21, 22, 23].flatMap((a) => [0, 1, 2, 3].map(() => idleSocket(l.port, `127.0.0.${a}`)))));
  const guessers = Array.from({ length: 10 }, async (_, a) => {
    const out: unknown[] = [];
    for (let i = 0; i < 5; i++) out.push(await wrongSecret(l.port, `127.0.0.${30 + a}`));
    return out;
  });
  const transfer = sendTree(`${src}/`, l.port);
  const [r, ...guesses] = await Promise.all([transfer, ...guessers]);
  assert.equal(r.summary.failed, 0);
  assert.equal(r.summary.committed, 120);
  const errors = guesses.flat();
  assert.equal(errors.length, 50);
  // Every guess fails. One event loop runs both ends here, so under load a guesser
  // may write its hello after the listener's (short) hello deadline and be dropped
  // before it could guess: FERRY_E_CONNECT, not counted. Every other one is
  // FERRY_E_AUTH on both sides.
  const auth = errors.filter((e) => isFerryError(e, 'FERRY_E_AUTH')).length;
  const late = l.warnings.filter((w) => /from 127\.0\.0\.3\d:\d+: no hello within/.test(w)).length - lateBefore;
  for (const e of errors) assert.ok(isFerryError(e, 'FERRY_E_AUTH') || isFerryError(e, 'FERRY_E_CONNECT'), String(e));
  assert.equal(auth + late, 50, `${auth} authentication failures and ${late} late hellos`);
  assert.ok(auth >= 25, `only ${auth} of 50 guesses reached the server's confirmation`);
  await until(() => idle.every((s) => s.isClosed()), 10_000, 'idle sockets dropped at the first-bytes deadline');
  // The client knows first (it checks mac_s); the server counts when the Notice arrives.
  const counted = (): number => l.warnings.filter((w) => /failed attempt/.test(w)).length - failuresBefore;
  await until(() => counted() >= auth, 10_000, 'every wrong secret counted');
  assert.equal(counted(), auth);
}

test('50 wrong secrets and 16 idle sockets while a real transfer runs: the transfer completes, recv leaks no fds or memory', async (t) => {
  const root = await tmpDir('ferry-issue11-');
  const src = path.join(root, 'src');
  const spec: TreeSpec = {};
  for (let i = 0; i < 120; i++) spec[`d${i % 6}/f${i}.bin`] = Buffer.alloc(1000 + i * 37, i & 0xff);
  await makeTree(src, spec);
  const dsts = [1, 2, 3].map((i) => path.join(root, `dst${i}`));
  let current = 0;
  // recv writes into one DST; each round moves the previous one out of the way.
  const dst = path.join(root, 'dst');
  // The hello deadline leaves room for this one event loop running both ends under load.
  const l = await startListener(dst, { authBackoffMs: 1, authBackoffMaxMs: 5, helloTimeoutMs: 1500 });
  try {
    const next = async (): Promise<void> => {
      await round(l, src);
      assert.deepEqual(await compareTrees(src, dst), []);
      await rename(dst, dsts[current++]!);
    };
    await next(); // warm-up: modules, JIT, lazily created pools
    const fds0 = await settledFds();
    const heap0 = await settledHeap();
    accepted.length = 0;
    await next();
    await next();
    const fds1 = await settledFds();
    const heap1 = await settledHeap();
    assert.ok(accepted.length >= 2 * (50 + 16 + 1), `saw ${accepted.length} accepted sockets`);
    // A failed handshake lets its Notice drain for up to 2 s before the socket object is let go.
    let alive = accepted.length;
    for (let i = 0; i < 50 && alive > 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      await settledHeap();
      alive = accepted.filter((w) => w.deref() !== undefined).length;
    }
    assert.equal(alive, 0, `${alive} of ${accepted.length} accepted sockets are still reachable`);
    assert.equal(fds1, fds0, `file descriptors: ${fds0} before, ${fds1} after two more rounds`);
    const grownMiB = (heap1 - heap0) / 2 ** 20;
    t.diagnostic(`fds ${fds0} -> ${fds1}; heap ${(heap0 / 2 ** 20).toFixed(1)} -> ${(heap1 / 2 ** 20).toFixed(1)} MiB; rss ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB`);
    assert.ok(grownMiB < 4, `heap grew by ${grownMiB.toFixed(1)} MiB over two rounds`);
  } finally {
    await l.stop();
  }
});
