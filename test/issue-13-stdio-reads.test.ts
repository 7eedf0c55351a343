/**
 * Issue #13, the --via-ssh data path: the secure channel reads ssh's pipe the way it
 * reads a TCP socket, into one buffer of its own reused for every read
 * (modes/stdio-duplex.ts READS_INTO_BUFFER, secure/socket-reads.ts), not into a fresh
 * 64 KiB buffer per read for the garbage collector. What must hold:
 * - bytes the pipe's stream held before the switch (the bootstrap's leftover, put back
 *   by LineReader.release) come first, then every read lands in the lent buffer, in order;
 * - a callback's false pauses the pipe and the duplex's resume() starts it again;
 * - the duplex still ends when the pipe does;
 * - the channel over real pipes takes this path (no 'data' listener left on the pipe).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { StdioDuplex } from '../src/modes/stdio-duplex.js';
import { READS_INTO_BUFFER } from '../src/secure/channel-api.js';
import { channelPair, collect } from './support/secure-helpers.js';

const skip = process.env.FERRY_USER_READS === '0' ? 'FERRY_USER_READS=0 turns lent reads off' : false;

test('StdioDuplex lends reads of the pipe: held bytes first, then reads in one buffer, pause/resume, end', { skip }, async () => {
  const cat = spawn('cat', [], { stdio: ['pipe', 'pipe', 'ignore'] });
  try {
    const d = new StdioDuplex(cat.stdout, cat.stdin);
    cat.stdout.unshift(Buffer.from('held:'));
    const buf = Buffer.alloc(64 * 1024);
    const got: Buffer[] = [];
    let lent = 0;
    let paused = 0;
    let pauseNext = true;
    const onRead = (bytes: Buffer): boolean => {
      got.push(Buffer.from(bytes));
      if (bytes.buffer === buf.buffer) lent++;
      if (pauseNext && lent > 0) {
        pauseNext = false;
        paused++;
        setTimeout(() => d.resume(), 50);
        return false;
      }
      return true;
    };
    assert.equal(d[READS_INTO_BUFFER](buf, onRead), true);
    d.resume();
    const ended = new Promise<void>((resolve) => d.once('end', resolve));
    const body = randomBytes(3 * 1024 * 1024);
    for (let i = 0; i < body.length; i += 256 * 1024) d.write(body.subarray(i, i + 256 * 1024));
    d.end();
    await ended;
    assert.ok(Buffer.concat(got).equals(Buffer.concat([Buffer.from('held:'), body])), 'bytes in order');
    assert.equal(paused, 1);
    assert.ok(lent >= body.length / buf.length, `reads into the lent buffer: ${lent}`);
    assert.equal(cat.stdout.listenerCount('data'), 0);
    d.destroy();
  } finally {
    cat.kill();
  }
});

test('the channel over ssh-like pipes reads into its own buffer (no data events on the pipe), frames intact', { skip }, async () => {
  const ab = spawn('cat', [], { stdio: ['pipe', 'pipe', 'ignore'] });
  const ba = spawn('cat', [], { stdio: ['pipe', 'pipe', 'ignore'] });
  try {
    const a = new StdioDuplex(ba.stdout, ab.stdin);
    const b = new StdioDuplex(ab.stdout, ba.stdin);
    const psk = { auth: 'psk' as const, secret: Buffer.alloc(32, 0x5a), plainInSsh: true };
    const p = channelPair(a, b, psk, psk);
    const [c, s] = await Promise.all([p.client, p.server]);
    assert.equal(ab.stdout.listenerCount('data'), 0, 'the receiving pipe has no data listener');
    assert.equal(ba.stdout.listenerCount('data'), 0, 'nor the sending side\'s');
    const sent = [1, 70_000, 1_100_000, 5, 300_000].map((n) => randomBytes(n));
    const sending = (async () => {
      for (const x of sent) await c.send(0x10, x);
      await c.close();
    })();
    const frames = await collect(s);
    await sending;
    assert.equal(frames.length, sent.length);
    frames.forEach((f, i) => assert.ok(Buffer.from(f.payload).equals(sent[i]!), `frame ${i}`));
    await s.close();
    a.destroy();
    b.destroy();
  } finally {
    ab.kill();
    ba.kill();
  }
});
