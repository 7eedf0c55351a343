/**
 * Checks shared by the secure-channel suites (CPace in secure-channel, PSK in
 * secure-psk, plaintext inside ssh in issue-13): the same claims hold for every
 * handshake and every record protection, so each is written once here and the suites
 * call it with their own channel options.
 *
 * - `isCode`: an assert.rejects predicate for a FerryError with a given code (and text).
 * - `replayFails`: a recorded client, replayed against a new server, fails FERRY_E_AUTH
 *   and has no frame delivered.
 * - `flushesArriveIntact`: many sends of varying size, through one payload buffer
 *   overwritten after each send, to a receiver that starts late: every frame arrives as
 *   sent, so no buffer (the caller's or the channel's reused output) is reused too early.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { isFerryError } from '../../src/core/errors.js';
import { establishChannel, type SecureChannel } from '../../src/secure/channel.js';
import { channelPair, collect, duplexPair, type Side } from './secure-helpers.js';

export const isCode = (code: string, re?: RegExp) => (e: unknown): boolean => {
  assert.ok(isFerryError(e), `expected a FerryError, got ${String(e)}`);
  assert.equal(e.code, code, e.message);
  if (re) assert.match(e.message, re);
  return true;
};

/**
 * Record the client's bytes of one whole session (handshake, a frame, the end), then
 * play them to a fresh server with the same options: it must fail FERRY_E_AUTH and
 * deliver nothing. `side` must name the secret both sessions use.
 */
export async function replayFails(side: Side & Required<Pick<Side, 'secret'>>): Promise<void> {
  const recorded: Buffer[] = [];
  const [a, b] = duplexPair((c) => (recorded.push(Buffer.from(c)), c));
  const p = channelPair(a, b, side, side);
  const [c, s] = await Promise.all([p.client, p.server]);
  const got = collect(s);
  await c.send(0x10, Buffer.from('transfer me'));
  await c.close();
  assert.equal((await got).length, 1);
  a.destroy();

  const [attacker, victim] = duplexPair();
  const server = establishChannel(victim, { role: 'server', peer: 'replayer', ktls: 'off', ...side });
  let delivered = 0;
  server.then((ch) => collect(ch).then((f) => (delivered += f.length)), () => undefined);
  attacker.on('data', () => {});
  for (const chunk of recorded) attacker.write(chunk);
  attacker.end();
  await assert.rejects(server, isCode('FERRY_E_AUTH'));
  assert.equal(delivered, 0);
}

/** 120 flushes of 1 B to 1.1 MB from `c` to `s`, the receiver starting 300 ms late; closes both. */
export async function flushesArriveIntact(c: SecureChannel, s: SecureChannel): Promise<void> {
  const sent: Buffer[] = [];
  const buf = Buffer.alloc(1_200_000);
  const sending = (async () => {
    for (let i = 0; i < 120; i++) {
      const size = [1, 700, 70_000, 1_100_000, 16_384, 300_000][i % 6]! + i;
      const payload = buf.subarray(0, size);
      randomBytes(size).copy(payload);
      sent.push(Buffer.from(payload));
      await c.send(0x10, payload);
      if (i % 7 === 0) await new Promise((r) => setImmediate(r));
    }
    await c.close();
  })();
  // Writes queue up behind a full transport until the receiver starts reading.
  await new Promise((r) => setTimeout(r, 300));
  const got = collect(s);
  await sending;
  const frames = await got;
  assert.equal(frames.length, sent.length);
  frames.forEach((f, i) => assert.ok(Buffer.from(f.payload).equals(sent[i]!), `frame ${i} differs`));
  await s.close();
}
