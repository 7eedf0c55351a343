/**
 * Record layer and key schedule against RFC 8448 §3 ("Simple 1-RTT Handshake",
 * TLS_AES_128_GCM_SHA256). The hex below is RFC 8448 §3's, as transcribed in two
 * independent public test suites that agree byte for byte.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import {
  RecordOpener,
  RecordSealer,
  openRecord,
  sealRecord,
  MAX_RECORD_PLAINTEXT,
  RECORD_OVERHEAD,
} from '../src/secure/record-layer.js';
import { hkdfExpandLabel, trafficKeys, deriveSecret, hkdfExtract, nextTrafficSecret } from '../src/secure/key-schedule.js';
import { isFerryError } from '../src/core/errors.js';
import type { TrafficSecret } from '../src/secure/traffic-secret.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

// RFC 8448 §3: {server} derive write traffic keys for application data.
const S_AP_SECRET = hex('a1 1a f9 f0 55 31 f8 56 ad 47 11 6b 45 a9 50 32 82 04 b4 f4 4b fb 6b 3a 4b 4f 1f 3f cb 63 16 43');
const S_AP_KEY = hex('9f 02 28 3b 6c 9c 07 ef c2 6b b9 f2 ac 92 e3 56');
const S_AP_IV = hex('cf 78 2b 88 dd 83 54 9a ad f1 e9 84');
// RFC 8448 §3: {client} derive write traffic keys for application data.
const C_AP_SECRET = hex('9e 40 64 6c e7 9a 7f 9d c0 5a f8 88 9b ce 65 52 87 5a fa 0b 06 df 00 87 f7 92 eb b7 c1 75 04 a5');
const C_AP_KEY = hex('17 42 2d da 59 6e d5 d9 ac d8 90 e3 c6 3f 50 51');
const C_AP_IV = hex('5b 78 92 3d ee 08 57 90 33 e5 23 d9');
// RFC 8448 §3: {server} derive write traffic keys for handshake data.
const S_HS_SECRET = hex('b6 7b 7d 69 0c c1 6c 4e 75 e5 42 13 cb 2d 37 b4 e9 c9 12 bc de d9 10 5d 42 be fd 59 d3 91 ad 38');
const S_HS_KEY = hex('3f ce 51 60 09 c2 17 27 d0 f2 e4 e8 6e e4 03 bc');
const S_HS_IV = hex('5d 31 3e b2 67 12 76 ee 13 00 0b 30');
// RFC 8448 §3: {server} extract secret "early" (IKM = 32 zero bytes, salt 0) and derive secret "derived".
const EARLY_SECRET = hex('33 ad 0a 1c 60 7e c0 3b 09 e6 cd 98 93 68 0c e2 10 ad f3 00 aa 1f 26 60 e1 b2 2e 10 f1 70 f9 2a');
const DERIVED = hex('6f 26 15 a1 08 c7 02 c5 67 8f 54 fc 9d ba b6 97 16 c0 76 18 9c 48 25 0c eb ea c3 57 6c 36 11 ba');
const EMPTY_HASH = hex('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
// RFC 8448 §3: {client} send application_data record (payload 00 01 .. 31, seq 0 under client app keys).
const C_APP_RECORD = hex(`17 03 03 00 43 a2 3f 70 54 b6 2c 94 d0 af fa fe 82 28 ba 55
  cb ef ac ea 42 f9 14 aa 66 bc ab 3f 2b 98 19 a8 a5 b4 6b 39 5b d5 4a 9a 20 44 1e 2b
  62 97 4e 1f 5a 62 92 a2 97 70 14 bd 1e 3d ea e6 3a ee bb 21 69 49 15 e4`);
// RFC 8448 §3: {server} send application_data record (same payload; seq 1: NewSessionTicket was seq 0).
const S_APP_RECORD = hex(`17 03 03 00 43 2e 93 7e 11 ef 4a c7 40 e5 38 ad 36 00 5f c4
  a4 69 32 fc 32 25 d0 5f 82 aa 1b 36 e3 0e fa f9 7d 90 e6 df fc 60 2d cb 50 1a 59 a8
  fc c4 9c 4b f2 e5 f0 a2 1c 00 47 c2 ab f3 32 54 0d d0 32 e1 67 c2 95 5d`);
const PAYLOAD = Buffer.from(Array.from({ length: 50 }, (_, i) => i));

test('RFC 8448 §3: HKDF-Extract and Derive-Secret("derived")', () => {
  const early = hkdfExtract(Buffer.alloc(0), Buffer.alloc(32));
  assert.deepEqual(early, EARLY_SECRET);
  assert.deepEqual(deriveSecret(early, 'derived', EMPTY_HASH), DERIVED);
});

test('RFC 8448 §3: HKDF-Expand-Label key/iv from traffic secrets', () => {
  for (const [secret, key, iv] of [
    [S_AP_SECRET, S_AP_KEY, S_AP_IV],
    [C_AP_SECRET, C_AP_KEY, C_AP_IV],
    [S_HS_SECRET, S_HS_KEY, S_HS_IV],
  ] as const) {
    const ts = trafficKeys(secret);
    assert.deepEqual(ts.key, key);
    assert.deepEqual(ts.iv, iv);
    assert.deepEqual(hkdfExpandLabel(secret, 'key', Buffer.alloc(0), 16), key);
  }
  assert.equal(nextTrafficSecret(S_AP_SECRET).length, 32);
});

test('RFC 8448 §3: client application_data record, byte-exact seal and open', () => {
  const ts: TrafficSecret = { key: C_AP_KEY, iv: C_AP_IV, seq: 0n };
  assert.deepEqual(sealRecord(ts, PAYLOAD), C_APP_RECORD);
  assert.deepEqual(new RecordSealer(ts).seal([PAYLOAD]), C_APP_RECORD);
  assert.deepEqual(new RecordSealer(ts).seal([PAYLOAD.subarray(0, 7), PAYLOAD.subarray(7)]), C_APP_RECORD);
  const opener = new RecordOpener(ts);
  opener.push(C_APP_RECORD.subarray(0, 3));
  assert.equal(opener.next(), null);
  opener.push(C_APP_RECORD.subarray(3));
  assert.deepEqual(opener.next(), PAYLOAD);
  assert.equal(opener.seq, 1n);
});

test('RFC 8448 §3: server application_data record at seq 1', () => {
  const ts: TrafficSecret = { key: S_AP_KEY, iv: S_AP_IV, seq: 1n };
  assert.deepEqual(sealRecord(ts, PAYLOAD), S_APP_RECORD);
  assert.deepEqual(new RecordSealer(ts).seal([PAYLOAD]), S_APP_RECORD);
  assert.deepEqual(openRecord(ts, S_APP_RECORD), { contentType: 0x17, content: PAYLOAD });
  const opener = new RecordOpener(ts);
  opener.push(S_APP_RECORD);
  assert.deepEqual(opener.next(), PAYLOAD);
});

test('fast sealer matches the one-record reference across record boundaries', () => {
  const ts: TrafficSecret = { key: randomBytes(16), iv: randomBytes(12), seq: 0xfffff0n };
  const data = randomBytes(MAX_RECORD_PLAINTEXT * 3 + 123);
  const parts = [data.subarray(0, 1000), data.subarray(1000, 40000), data.subarray(40000)];
  const sealed = new RecordSealer(ts).seal(parts);
  assert.equal(sealed.length, data.length + 4 * RECORD_OVERHEAD);
  let off = 0;
  let seq = ts.seq;
  for (let r = 0; r < 4; r++) {
    const content = data.subarray(r * MAX_RECORD_PLAINTEXT, Math.min(data.length, (r + 1) * MAX_RECORD_PLAINTEXT));
    const ref = sealRecord({ ...ts, seq }, content);
    assert.deepEqual(sealed.subarray(off, off + ref.length), ref, `record ${r} (seq ${seq}) differs`);
    off += ref.length;
    seq++;
  }
  // sealv: the same bytes as a list.
  assert.deepEqual(Buffer.concat(new RecordSealer(ts).sealv(parts)), sealed);
  assert.deepEqual(new RecordSealer(ts).sealv([]), []);
  // Opener over odd-sized chunks gets it all back.
  const opener = new RecordOpener(ts);
  const got: Buffer[] = [];
  for (let i = 0; i < sealed.length; i += 777) {
    opener.push(sealed.subarray(i, i + 777));
    for (let c = opener.next(); c !== null; c = opener.next()) got.push(Buffer.from(c));
  }
  assert.deepEqual(Buffer.concat(got), data);
});

test('opener rejects a bad header length before buffering it', () => {
  const ts: TrafficSecret = { key: randomBytes(16), iv: randomBytes(12), seq: 0n };
  const opener = new RecordOpener(ts, { peer: 'p' });
  opener.push(Buffer.from([0x17, 0x03, 0x03, 0xff, 0xff]));
  assert.throws(() => opener.next(), (e) => isFerryError(e, 'FERRY_E_INTEGRITY') && /out of range/.test(e.message));
});
