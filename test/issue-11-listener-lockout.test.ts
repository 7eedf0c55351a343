/**
 * Issue #11, defect 3: listener lockout. 16 idle sockets used to fill every
 * handshake slot for 30 s, so a stranger could keep every legitimate sender out
 * just by connecting and saying nothing. Now each source address gets 4 handshakes
 * at a time (its other connections wait their turn, up to 64, so a `-P 16` sender is
 * not refused), all addresses together at most 256 connections, a connection must
 * send its hello within a deadline of being served, and the whole handshake has a
 * deadline of its own.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { addressKey } from '../src/modes/recv.js';
import { encodeHello } from '../src/wire/hello.js';
import { cleanupTmpDirs, compareTrees, makeTree, tmpDir } from './support/tree.js';
import { connectFrom, idleSocket, sendTree, startListener, within } from './support/listener.js';
import { lastJson, sendTo, startRecv } from './support/net-harness.js';

after(cleanupTmpDirs);

test('16 idle sockets from one address do not keep out a sender from another address', async () => {
  const root = await tmpDir('ferry-issue11-');
  const src = path.join(root, 'src');
  const dst = path.join(root, 'dst');
  await makeTree(src, { 'a.txt': 'aaaa', 'sub/b.txt': 'bb' });
  // A long hello deadline: the idle sockets are still there while the sender runs.
  const l = await startListener(dst, { helloTimeoutMs: 60_000 });
  try {
    const idle = await Promise.all(Array.from({ length: 16 }, () => idleSocket(l.port, '127.0.0.2')));
    const r = await within(sendTree(`${src}/`, l.port), 20_000, 'the legitimate transfer');
    assert.equal(r.summary.committed, 2);
    assert.deepEqual(await compareTrees(src, dst), []);
    // All 16 are still connected, but only the address's 4 turns were served (got the
    // server hello); the other 12 wait behind them and cost the listener nothing else.
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(idle.filter((s) => !s.isClosed()).length, 16);
    assert.equal(idle.filter((s) => s.received() > 0).length, 4);
    for (const s of idle) s.socket.destroy();
  } finally {
    await l.stop();
  }
});

test('idle sockets are dropped after the first-bytes deadline, slow handshakes after the handshake deadline', async () => {
  const dst = path.join(await tmpDir('ferry-issue11-'), 'dst');
  const l = await startListener(dst, { helloTimeoutMs: 200, handshakeTimeoutMs: 600 });
  try {
    // Eight: four are served at once, the other four when those are dropped.
    const idle = await Promise.all(Array.from({ length: 8 }, () => idleSocket(l.port, '127.0.0.2')));
    // A slow loris: a valid hello, then nothing.
    const slow = await idleSocket(l.port, '127.0.0.3');
    slow.socket.write(encodeHello());
    await within(Promise.all(idle.map((s) => s.closed)), 5_000, 'idle sockets dropped');
    await within(slow.closed, 5_000, 'a hello-only connection dropped');
    assert.equal(l.warnings.filter((w) => /from 127\.0\.0\.2:\d+: no hello within 0\.2 s/.test(w)).length, 8, l.warnings.join('\n'));
    assert.ok(l.warnings.some((w) => /FERRY_E_TIMEOUT/.test(w) && /handshake not finished after 0\.6 s/.test(w)), l.warnings.join('\n'));
    // Their slots are free again.
    const again = await connectFrom(l.port, '127.0.0.2');
    await within(new Promise((r) => again.once('data', r)), 5_000, 'a new connection from the same address served');
    again.destroy();
  } finally {
    await l.stop();
  }
});

test('addresses are counted per IPv4 address and per IPv6 /64', () => {
  assert.equal(addressKey('127.0.0.2'), '127.0.0.2');
  assert.equal(addressKey('::ffff:10.1.2.3'), '10.1.2.3');
  assert.equal(addressKey('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64');
  assert.equal(addressKey('2001:db8:1:2:bbbb:cccc:dddd:eeee'), '2001:db8:1:2::/64');
  assert.equal(addressKey('2001:0db8:0001:0002::9'), '2001:db8:1:2::/64');
  assert.equal(addressKey('fe80::1%eth0'), 'fe80:0:0:0::/64');
  assert.equal(addressKey('::1'), '0:0:0:0::/64');
  assert.notEqual(addressKey('2001:db8:1:3::1'), addressKey('2001:db8:1:2::1'));
  assert.equal(addressKey(undefined), '?');
});

test('the per-address cap does not refuse a legitimate -P 16 sender: its extra handshakes wait their turn', async () => {
  // Two processes (the CLI), so the 15 extra handshakes really arrive at once.
  const root = await tmpDir('ferry-issue11-');
  const src = path.join(root, 'src');
  const dst = path.join(root, 'dst');
  const spec: Record<string, string> = {};
  for (let i = 0; i < 40; i++) spec[`f${i}.txt`] = `file ${i}`;
  await makeTree(src, spec);
  const rv = await startRecv(dst);
  const s = await sendTo(`${src}/`, rv.port, ['-P', '16', '--json']).done;
  const r = await rv.done;
  assert.equal(s.code, 0, s.stderr);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(lastJson(s.stdout)['streams'], 16);
  assert.deepEqual(await compareTrees(src, dst), []);
});

test('when every slot is taken, a newcomer from another address displaces a waiting connection of the busiest address', async () => {
  const root = await tmpDir('ferry-issue11-');
  const src = path.join(root, 'src');
  const dst = path.join(root, 'dst');
  await makeTree(src, { 'a.txt': 'aaaa' });
  const l = await startListener(dst, { helloTimeoutMs: 60_000, maxPendingHandshakes: 12 });
  try {
    const idle = await Promise.all(Array.from({ length: 12 }, () => idleSocket(l.port, '127.0.0.2')));
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(idle.filter((s) => !s.isClosed()).length, 12, 'the listener is full');
    const r = await within(sendTree(`${src}/`, l.port), 20_000, 'the legitimate transfer');
    assert.equal(r.summary.committed, 1);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(idle.filter((s) => s.isClosed()).length, 1, 'one waiting idle socket made room');
    assert.equal(idle.filter((s) => s.received() > 0 && !s.isClosed()).length, 4, 'the served ones were not touched');
    for (const s of idle) s.socket.destroy();
  } finally {
    await l.stop();
  }
});
