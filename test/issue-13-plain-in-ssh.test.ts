/**
 * Issue #13, the --via-ssh path: a channel carried over the ssh connection's own
 * stdin/stdout agrees in its handshake to send its frames without AES-GCM records
 * (secure/plain-records.ts; SECURITY.md, "Plaintext records inside ssh"), and runs over
 * modes/stdio-duplex.ts. What must hold:
 * - a direct channel never runs without records, whoever asks: a peer that offers
 *   plaintext to it is refused (the downgrade attack), and a socket cannot offer it;
 * - the offer is in the confirmed transcript: flipping it on the way fails the handshake;
 * - plaintext needs both sides' offer; frames, the authenticated end and truncation
 *   behave as with records; a key update has no meaning there and is refused;
 * - over real pipes the channel's reused output buffers never leak into later frames.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, constants as fsc } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { PIPE_BYTES, StdioDuplex, growPipe } from '../src/modes/stdio-duplex.js';
import { pipeAddon } from '../src/native/index.js';
import { establishChannel, PLAIN_IN_SSH_CIPHER } from '../src/secure/channel.js';
import { clientHandshake } from '../src/secure/handshake.js';
import { secretBytes } from '../src/secure/secret.js';
import { FrameTypes, encodeFrame } from '../src/wire/frame.js';
import { channelPair, collect, duplexPair, tcpPair } from './support/secure-helpers.js';
import { flushesArriveIntact, isCode } from './support/channel-checks.js';

const SECRET = 'correct horse battery staple';
/** The ssh mode's handshake (PSK, a 32-byte random key) and send/recv's (CPace): the flag works the same in both. */
const AUTHS = [
  { auth: 'psk' as const, secret: Buffer.alloc(32, 0x5a) },
  { auth: 'cpace' as const, secret: secretBytes(SECRET) },
];

test('downgrade attack: plaintext records on a direct channel are refused by the server, which sends no frame', async () => {
  for (const { auth, secret } of AUTHS) {
    const { client: a, server: b, close } = await tcpPair();
    try {
      // A client that knows the key and offers plaintext records over TCP (the channel
      // would not let it: it runs the bare handshake).
      const fromServer: Buffer[] = [];
      const server = establishChannel(b, { role: 'server', secret, auth, peer: 'client', ktls: 'off' });
      const hs = await clientHandshake(a, { secret, auth, peer: 'server', timeoutMs: 10_000, plainInSsh: true });
      assert.equal(hs.plainInSsh, false, 'the client must not think plaintext was agreed');
      a.on('data', (c: Buffer) => fromServer.push(c));
      a.resume();
      await assert.rejects(server, isCode('FERRY_E_PROTOCOL', /plaintext records on a connection that is not carried by ssh/));
      await new Promise<void>((r) => (a.readableEnded ? r() : a.once('close', () => r())));
      const after = Buffer.concat([...hs.leftover, ...fromServer]);
      // Only the server's Notice (handshake message type 0x7f) may follow: no frame, plain or sealed.
      assert.ok(after.length === 0 || after[0] === 0x7f, `${auth}: the server sent ${after.length} bytes that are not a Notice`);
    } finally {
      close();
    }
  }
});

test('downgrade attack: the same offer to a direct client is refused by the client', async () => {
  for (const { auth, secret } of AUTHS) {
    const [a, b] = duplexPair();
    const p = channelPair(a, b, { auth, secret }, { auth, secret, plainInSsh: true });
    const [cr] = await Promise.allSettled([p.client, p.server]);
    assert.equal(cr.status, 'rejected', auth);
    isCode('FERRY_E_PROTOCOL', /plaintext records on a connection that is not carried by ssh/)((cr as PromiseRejectedResult).reason);
    a.destroy();
  }
});

test('a socket cannot offer plaintext records (and neither with kTLS)', async () => {
  const { client: a, close } = await tcpPair();
  try {
    await assert.rejects(establishChannel(a, { role: 'client', secret: SECRET, ktls: 'off', plainInSsh: true }), isCode('FERRY_E_INTERNAL', /only for a channel carried over ssh stdio/));
    const [x] = duplexPair();
    await assert.rejects(establishChannel(x, { role: 'client', secret: SECRET, ktls: 'auto', plainInSsh: true }), isCode('FERRY_E_INTERNAL'));
  } finally {
    close();
  }
});

test('the plaintext offer is authenticated: an on-path attacker who sets or clears it fails key confirmation', async () => {
  // The client's first write is hello || ClientShare (CPace: sid, prefix_free_cat(Y, AD))
  // or hello || ClientNonce (PSK: n_c, flags): either way its last byte is the flags byte.
  for (const { auth, secret } of AUTHS) {
    for (const [clientPlain, serverPlain] of [
      [false, true], // the attacker sets bit 1 to have both sides drop their records
      [true, true], // the attacker clears it (harmless, but still not the client's message)
    ] as const) {
      let done = false;
      const flip = (c: Buffer): Buffer => {
        if (done) return c;
        const i = c.length - 1;
        assert.equal(c[i]! & 0x01, 0x01, 'the last byte of the first write is the flags byte');
        const out = Buffer.from(c);
        out[i] = out[i]! ^ 0x02;
        done = true;
        return out;
      };
      const [a, b] = duplexPair(flip);
      const p = channelPair(a, b, { auth, secret, plainInSsh: clientPlain }, { auth, secret, plainInSsh: serverPlain });
      const [cr, sr] = await Promise.allSettled([p.client, p.server]);
      assert.equal(cr.status, 'rejected', auth);
      assert.equal(sr.status, 'rejected', auth);
      isCode('FERRY_E_AUTH')((cr as PromiseRejectedResult).reason);
      a.destroy();
    }
  }
});

test('over ssh stdio both sides offering: frames go without records, intact, with an authenticated end', async () => {
  for (const { auth, secret } of AUTHS) {
    const seen: Buffer[] = [];
    const [a, b] = duplexPair((c) => (seen.push(Buffer.from(c)), c));
    const p = channelPair(a, b, { auth, secret, plainInSsh: true }, { auth, secret, plainInSsh: true });
    const [c, s] = await Promise.all([p.client, p.server]);
    assert.equal(c.info.cipher, PLAIN_IN_SSH_CIPHER);
    assert.equal(s.info.cipher, PLAIN_IN_SSH_CIPHER);
    const got = collect(s);
    const payloads = [Buffer.from('visible payload'), randomBytes(70_000), Buffer.alloc(0), randomBytes(1_100_000)];
    for (const pl of payloads) await c.send(0x10, pl);
    await c.close();
    const frames = await got;
    assert.deepEqual(frames.map((f) => Buffer.from(f.payload).toString('hex')), payloads.map((pl) => pl.toString('hex')));
    // The wire after the handshake is the frames themselves (ssh encrypts them).
    assert.ok(Buffer.concat(seen).includes(Buffer.from('visible payload')));
    assert.ok(!Buffer.concat(seen).includes(secret));
    a.destroy();
  }
});

/** A plaintext channel's server end and a raw client that completed the handshake. */
async function rawPlainClient(): Promise<{ raw: import('node:stream').Duplex; server: Promise<import('../src/secure/channel.js').SecureChannel> }> {
  const [a, b] = duplexPair();
  const secret = AUTHS[0]!.secret;
  const server = establishChannel(b, { role: 'server', secret, auth: 'psk', peer: 'client', ktls: 'off', plainInSsh: true });
  const hs = await clientHandshake(a, { secret, auth: 'psk', peer: 'server', timeoutMs: 10_000, plainInSsh: true });
  assert.equal(hs.plainInSsh, true);
  a.resume();
  return { raw: a, server };
}

test('plaintext channel: a key update is a protocol error, a cut before the end an integrity error, data after the end refused', async () => {
  {
    const { raw, server } = await rawPlainClient();
    const s = await server;
    raw.write(Buffer.concat([...encodeFrame(0x10, Buffer.from('a')), ...encodeFrame(FrameTypes.KEY_UPDATE, Buffer.alloc(0))]));
    await assert.rejects(collect(s), isCode('FERRY_E_PROTOCOL', /key update on a channel without records/));
    raw.destroy();
  }
  {
    const { raw, server } = await rawPlainClient();
    const s = await server;
    raw.end(Buffer.concat(encodeFrame(0x10, Buffer.from('half a file'))));
    await assert.rejects(collect(s), isCode('FERRY_E_INTEGRITY', /cut before the authenticated end/));
    raw.destroy();
  }
  {
    const { raw, server } = await rawPlainClient();
    const s = await server;
    raw.write(Buffer.concat([...encodeFrame(FrameTypes.END, Buffer.alloc(0)), ...encodeFrame(0x10, Buffer.from('more'))]));
    await assert.rejects(collect(s), isCode('FERRY_E_PROTOCOL', /after its end of stream/));
    raw.destroy();
  }
});

test('over real pipes (StdioDuplex): many flushes of varying size arrive intact under backpressure, both protections', async () => {
  for (const plainInSsh of [true, false]) {
    // a → cat → b and b → cat → a: real pipes with kernel buffers that fill up.
    const ab = spawn('cat', [], { stdio: ['pipe', 'pipe', 'ignore'] });
    const ba = spawn('cat', [], { stdio: ['pipe', 'pipe', 'ignore'] });
    try {
      const a = new StdioDuplex(ba.stdout, ab.stdin);
      const b = new StdioDuplex(ab.stdout, ba.stdin);
      const psk = AUTHS[0]!;
      const p = channelPair(a, b, { ...psk, plainInSsh }, { ...psk, plainInSsh });
      const [c, s] = await Promise.all([p.client, p.server]);
      assert.equal(c.info.cipher, plainInSsh ? PLAIN_IN_SSH_CIPHER : 'aes-128-gcm');
      // An output buffer reused before the pipe took its bytes would show here.
      await flushesArriveIntact(c, s);
      a.destroy();
      b.destroy();
    } finally {
      ab.kill();
      ba.kill();
    }
  }
});

test('growPipe: a pipe grows to PIPE_BYTES with the data plane (else keeps its size); anything else is left alone', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-pipe-'));
  const fifo = join(dir, 'fifo');
  assert.equal(spawnSync('mkfifo', [fifo]).status, 0, 'mkfifo');
  // O_RDWR on a FIFO opens at once on Linux: one descriptor of the pipe.
  const fd = openSync(fifo, fsc.O_RDWR | fsc.O_NONBLOCK);
  const file = openSync(join(dir, 'plain'), 'w');
  try {
    const grown = growPipe(fd);
    if (pipeAddon() === undefined) assert.equal(grown, 0);
    else assert.ok(grown >= PIPE_BYTES, `pipe capacity ${grown}`);
    assert.equal(growPipe(file), 0);
  } finally {
    closeSync(fd);
    closeSync(file);
  }
});
