/**
 * Issue #14, "Dishonest output": a second sender to a busy `--keep-serving` receiver
 * is told, once, that it is queued ("queued behind another transfer at HOST:PORT"),
 * instead of waiting silently; it then goes through when the first session ends. The
 * notice (QUEUED) travels inside the authenticated channel after SESSION, so a
 * stranger learns nothing from it; the issue-11 tests keep the handshake's rules.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { MsgType, TRANSFER_VERSION, encodeCount, encodeSession } from '../src/wire/messages.js';
import { connectAsSender } from './support/hostile-peer.js';
import { SECRET, guessAndHangUp, startListener } from './support/listener.js';
import { sendTo } from './support/net-harness.js';
import { cleanupTmpDirs, makeTree, tmpDir } from './support/tree.js';

after(cleanupTmpDirs);

test('a sender queued behind a running session is told so, once, then served', async () => {
  const base = await tmpDir('ferry-queued-');
  const src = path.join(base, 'src');
  const dst = path.join(base, 'dst');
  await makeTree(src, { 'a.txt': 'second session' });
  const listener = await startListener(dst);
  try {
    // The first session: authenticated, accepted, and held open (no manifest yet).
    const first = await connectAsSender(listener.port, SECRET);
    await first.send(MsgType.SESSION, encodeSession({ version: TRANSFER_VERSION, flags: 0, streams: 1, chunkSize: 65536, excludes: [] }));
    assert.equal((await first.next())?.type, MsgType.SESSION_OK);

    // A stranger guessing while the receiver is busy learns what it would learn idle.
    assert.deepEqual(await guessAndHangUp(listener.port, 'wrong guess', '127.0.0.3'), { confirmed: true, right: false });

    const second = sendTo(`${src}/`, listener.port, [], { FERRY_SECRET: SECRET });
    const expected = `queued behind another transfer at 127.0.0.1:${listener.port}`;
    await new Promise<void>((resolve, reject) => {
      const check = (): void => {
        if (second.stderr().includes(expected)) resolve();
      };
      second.child.stderr!.on('data', check);
      void second.done.then((r) => reject(new Error(`second sender ended before it was told it is queued: ${r.code} ${r.stderr}`)));
    });
    assert.equal(await fsp.access(path.join(dst, 'a.txt')).then(() => true, () => false), false, 'the queued session ran early');

    // The first session ends (an empty manifest); the queued one then goes through.
    await first.send(MsgType.MANIFEST_END, encodeCount(0));
    assert.equal((await first.next())?.type, MsgType.SUMMARY);
    await first.end();
    const r = await second.done;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr.split(expected).length - 1, 1, r.stderr);
    assert.equal(await fsp.readFile(path.join(dst, 'a.txt'), 'utf8'), 'second session');
  } finally {
    await listener.stop();
  }
});
