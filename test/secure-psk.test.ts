/**
 * The ssh mode's PSK handshake (secure/handshake.ts, `auth: 'psk'`): the key is 32
 * random bytes handed over ssh, so the handshake is nonces + HKDF + key confirmation
 * both ways instead of CPace. Each attack below must end in FERRY_E_AUTH (or
 * FERRY_E_PROTOCOL for a mode mix-up) before a single frame is delivered.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { establishChannel, type SecureChannel } from '../src/secure/channel.js';
import { encodeMessage, MsgTypes, PSK_BYTES } from '../src/secure/handshake.js';
import { encodeHello, HELLO_BYTES } from '../src/wire/hello.js';
import { channelPair, collect, duplexPair, tcpPair } from './support/secure-helpers.js';
import { isCode, replayFails } from './support/channel-checks.js';

function pskPair(a: Duplex, b: Duplex, clientKey: Uint8Array, serverKey: Uint8Array = clientKey): { client: Promise<SecureChannel>; server: Promise<SecureChannel> } {
  return channelPair(a, b, { auth: 'psk', secret: clientKey }, { auth: 'psk', secret: serverKey });
}

/** Reads the handshake messages of a raw byte stream: the hello, then type/length/body messages. */
class RawPeer {
  #buf = Buffer.alloc(0);
  #wake: (() => void) | null = null;
  constructor(readonly stream: Duplex) {
    stream.on('data', (c: Buffer) => {
      this.#buf = Buffer.concat([this.#buf, c]);
      this.#wake?.();
    });
  }
  async take(n: number): Promise<Buffer> {
    while (this.#buf.length < n) await new Promise<void>((r) => (this.#wake = r));
    const out = this.#buf.subarray(0, n);
    this.#buf = this.#buf.subarray(n);
    return out;
  }
  async message(): Promise<{ type: number; body: Buffer; raw: Buffer }> {
    const head = await this.take(3);
    const body = await this.take(head.readUInt16BE(1));
    return { type: head[0]!, body, raw: Buffer.concat([head, body]) };
  }
}

test('psk: handshake over TCP, frames both ways; two connections under one key get different keys', async () => {
  const key = randomBytes(PSK_BYTES);
  const bindings: Buffer[] = [];
  for (let i = 0; i < 2; i++) {
    const { client: a, server: b, close } = await tcpPair();
    try {
      const p = pskPair(a, b, key);
      const [c, s] = await Promise.all([p.client, p.server]);
      assert.deepEqual(c.sessionBinding, s.sessionBinding);
      bindings.push(c.sessionBinding);
      const got = collect(s);
      await c.send(0x10, Buffer.from('hello over psk'));
      await c.close();
      const frames = await got;
      assert.equal(Buffer.from(frames[0]!.payload).toString(), 'hello over psk');
    } finally {
      close();
    }
  }
  assert.notDeepEqual(bindings[0], bindings[1]);
});

test('psk: a wrong key fails FERRY_E_AUTH on both sides, and the server never sees a frame', async () => {
  const { client: a, server: b, close } = await tcpPair();
  try {
    const p = pskPair(a, b, randomBytes(PSK_BYTES), randomBytes(PSK_BYTES));
    const [cr, sr] = await Promise.allSettled([p.client, p.server]);
    assert.equal(cr.status, 'rejected');
    assert.equal(sr.status, 'rejected');
    isCode('FERRY_E_AUTH')((cr as PromiseRejectedResult).reason);
    isCode('FERRY_E_AUTH')((sr as PromiseRejectedResult).reason);
  } finally {
    close();
  }
});

test('psk: replay of a recorded client against a new server with the same key fails FERRY_E_AUTH and delivers nothing', async () => {
  await replayFails({ auth: 'psk', secret: randomBytes(PSK_BYTES) });
});

test("psk: the server's own MAC reflected back as the client's fails FERRY_E_AUTH", async () => {
  const key = randomBytes(PSK_BYTES);
  const [attacker, victim] = duplexPair();
  const server = establishChannel(victim, { role: 'server', secret: key, auth: 'psk', peer: 'reflector', ktls: 'off' });
  server.catch(() => undefined);
  const raw = new RawPeer(attacker);
  attacker.write(Buffer.concat([encodeHello(), encodeMessage(MsgTypes.CLIENT_NONCE, Buffer.concat([randomBytes(32), Buffer.from([1])]))]));
  await raw.take(HELLO_BYTES);
  const serverNonce = await raw.message();
  assert.equal(serverNonce.type, MsgTypes.SERVER_NONCE);
  const serverConfirm = await raw.message();
  assert.equal(serverConfirm.type, MsgTypes.SERVER_CONFIRM);
  attacker.write(encodeMessage(MsgTypes.CLIENT_CONFIRM, serverConfirm.body));
  await assert.rejects(server, isCode('FERRY_E_AUTH'));
});

test("psk: a client's nonce echoed back as the server's, with its own MAC, fails FERRY_E_AUTH", async () => {
  // A man in the middle without the key can only reflect what the client sent.
  const key = randomBytes(PSK_BYTES);
  const [victim, attacker] = duplexPair();
  const client = establishChannel(victim, { role: 'client', secret: key, auth: 'psk', peer: 'mirror', ktls: 'off' });
  client.catch(() => undefined);
  const raw = new RawPeer(attacker);
  const hello = await raw.take(HELLO_BYTES);
  const clientNonce = await raw.message();
  assert.equal(clientNonce.type, MsgTypes.CLIENT_NONCE);
  attacker.write(Buffer.concat([hello, encodeMessage(MsgTypes.SERVER_NONCE, clientNonce.body), encodeMessage(MsgTypes.SERVER_CONFIRM, randomBytes(32))]));
  await assert.rejects(client, isCode('FERRY_E_AUTH'));
});

test('psk: a man in the middle without the key who alters one nonce byte makes both sides fail FERRY_E_AUTH', async () => {
  const key = randomBytes(PSK_BYTES);
  let first = true;
  // Flip the last byte of the client's nonce in its first write (hello || ClientNonce).
  const [a, b] = duplexPair((c) => {
    if (!first) return c;
    first = false;
    const m = Buffer.from(c);
    m[HELLO_BYTES + 3 + 31]! ^= 0x01;
    return m;
  });
  const p = pskPair(a, b, key);
  const [cr, sr] = await Promise.allSettled([p.client, p.server]);
  isCode('FERRY_E_AUTH')((cr as PromiseRejectedResult).reason);
  isCode('FERRY_E_AUTH')((sr as PromiseRejectedResult).reason);
});

test('psk and cpace never meet: each server refuses the other mode with FERRY_E_PROTOCOL', async () => {
  const key = randomBytes(PSK_BYTES);
  for (const [clientAuth, serverAuth] of [['cpace', 'psk'], ['psk', 'cpace']] as const) {
    const [a, b] = duplexPair();
    const c = establishChannel(a, { role: 'client', secret: key, auth: clientAuth, peer: 'server', ktls: 'off' });
    const s = establishChannel(b, { role: 'server', secret: key, auth: serverAuth, peer: 'client', ktls: 'off' });
    const [cr, sr] = await Promise.allSettled([c, s]);
    isCode('FERRY_E_PROTOCOL', /handshake message/)((sr as PromiseRejectedResult).reason);
    assert.equal(cr.status, 'rejected', `${clientAuth} client against a ${serverAuth} server`);
  }
});

test('psk takes only a 32-byte key: a typed secret is refused before any byte is sent', async () => {
  const [a, b] = duplexPair();
  const sent: Buffer[] = [];
  b.on('data', (c: Buffer) => sent.push(c));
  await assert.rejects(
    establishChannel(a, { role: 'client', secret: 'correct horse battery staple', auth: 'psk', peer: 'server', ktls: 'off' }),
    isCode('FERRY_E_INTERNAL', /32-byte random key/),
  );
  assert.equal(Buffer.concat(sent).length, 0);
});
