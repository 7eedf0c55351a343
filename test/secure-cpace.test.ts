/**
 * CPace known-answer tests. Source: draft-irtf-cfrg-cpace-21, Appendix B.3 "Test
 * vector for CPace using group ristretto255 and hash SHA-512" (B.3.1 generator,
 * B.3.2-B.3.3 messages, B.3.4 K, B.3.5 ISK initiator/responder, B.3.10-B.3.11
 * scalar_mult_vfy), plus the prepend_len examples of Appendix A.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RistrettoPoint } from '@noble/curves/ed25519';
import {
  DSI,
  calculateGenerator,
  deriveIsk,
  generatorString,
  lvCat,
  parseMessage,
  prependLen,
  scalarFromLE,
  scalarMult,
  scalarMultVfy,
  startCPace,
} from '../src/secure/cpace.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

// B.3.1 inputs
const PRS = Buffer.from('Password');
const CI = hex('0b415f696e69746961746f720b425f726573706f6e646572');
const SID = hex('7e4b4791d6a8ef019b936c79fb7f2c57');
const GEN_STR = hex(`11435061636552697374726574746f3235350850617373776f726464
  00000000000000000000000000000000000000000000000000000000
  00000000000000000000000000000000000000000000000000000000
  00000000000000000000000000000000000000000000000000000000
  00000000000000000000000000000000180b415f696e69746961746f
  720b425f726573706f6e646572107e4b4791d6a8ef019b936c79fb7f
  2c57`);
const G = hex('222b6b195fe84b1652badb6f6a3ae3d24341e7306967f0b8115b40d5698c7e56');
// B.3.2 / B.3.3
const ADA = Buffer.from('ADa');
const YA_SCALAR = hex('da3d23700a9e5699258aef94dc060dfda5ebb61f02a5ea77fad53f4ff0976d08');
const YA = hex('d6bac480f2c386c394efc7c47adb9925dcd2630b64f240c50f8d0eec482b9157');
const ADB = Buffer.from('ADb');
const YB_SCALAR = hex('d2316b454718c35362d83d69df6320f38578ed5984651435e2949762d900b80d');
const YB = hex('3ea7e0b19560d7c0b0f5734f63b955286dfa8232b5ebe63324e2d9e7433f7258');
// B.3.4 / B.3.5
const K = hex('80b69a8a76457ab6a4d7f887a4bf6b55a2f80ac19c333f917a05fc9887c8b40f');
const TRANSCRIPT_IR = hex(`20d6bac480f2c386c394efc7c47adb9925dcd2630b64f240c50f8d0e
  ec482b915703414461203ea7e0b19560d7c0b0f5734f63b955286dfa
  8232b5ebe63324e2d9e7433f725803414462`);
const ISK_IR = hex(`b69effbf61b51d56401c0f65601abe428de8206feaaf0e32198896dc
  ae7b35cd2b38950a39dfd5d4a79164614c2984f7daa460b588c1e80c
  3fa2068af7900447`);

test('draft-irtf-cfrg-cpace-21 A: prepend_len and lv_cat', () => {
  assert.deepEqual(prependLen(Buffer.alloc(0)), hex('00'));
  assert.deepEqual(prependLen(Buffer.from([0x01])), hex('0101'));
  assert.deepEqual(prependLen(Buffer.alloc(127)).subarray(0, 1), hex('7f'));
  assert.deepEqual(prependLen(Buffer.alloc(128)).subarray(0, 2), hex('8001'));
  assert.deepEqual(prependLen(Buffer.alloc(300)).subarray(0, 2), hex('ac02'));
  assert.deepEqual(lvCat(Buffer.from('1234'), Buffer.from('5'), Buffer.alloc(0), Buffer.from('678')), hex('0431323334013500033637 38'.replace(/ /g, '')));
});

test('draft-irtf-cfrg-cpace-21 B.3.1: generator_string and generator g', () => {
  assert.deepEqual(generatorString(DSI, PRS, CI, SID, 128), GEN_STR);
  assert.deepEqual(Buffer.from(calculateGenerator(PRS, CI, SID).toBytes()), G);
});

test('draft-irtf-cfrg-cpace-21 B.3.2-B.3.5: Ya, Yb, K and ISK (initiator/responder)', () => {
  const g = calculateGenerator(PRS, CI, SID);
  const ya = scalarFromLE(YA_SCALAR);
  const yb = scalarFromLE(YB_SCALAR);
  assert.deepEqual(scalarMult(ya, g), YA);
  assert.deepEqual(scalarMult(yb, g), YB);
  assert.deepEqual(scalarMultVfy(ya, YB), K);
  assert.deepEqual(scalarMultVfy(yb, YA), K);
  const msgA = lvCat(YA, ADA);
  const msgB = lvCat(YB, ADB);
  assert.deepEqual(Buffer.concat([msgA, msgB]), TRANSCRIPT_IR);
  assert.deepEqual(deriveIsk(SID, K, msgA, msgB), ISK_IR);
  // The protocol objects with the vector's scalars give the same ISK on both sides.
  const a = startCPace('a', PRS, CI, SID, ADA, ya);
  const b = startCPace('b', PRS, CI, SID, ADB, yb);
  assert.deepEqual(a.msg, msgA);
  assert.deepEqual(b.msg, msgB);
  assert.deepEqual(a.finish(b.msg)?.isk, ISK_IR);
  assert.deepEqual(b.finish(a.msg)?.isk, ISK_IR);
  assert.deepEqual(a.finish(b.msg)?.peerAD, ADB);
});

test('draft-irtf-cfrg-cpace-21 B.3.10: scalar_mult with valid inputs', () => {
  const s = scalarFromLE(hex('7cd0e075fa7955ba52c02759a6c90dbbfc10e6d40aea8d283e407d88cf538a05'));
  const X = hex('2c3c6b8c4f3800e7aef6864025b4ed79bd599117e427c41bd47d93d654b4a51c');
  const want = hex('7c13645fe790a468f62c39beb7388e541d8405d1ade69d1778c5fe3e7f6b600e');
  assert.deepEqual(scalarMult(s, RistrettoPoint.fromHex(X)), want);
  assert.deepEqual(scalarMultVfy(s, X), want);
});

test('draft-irtf-cfrg-cpace-21 B.3.11: scalar_mult_vfy returns G.I for invalid encodings and the identity', () => {
  const s = scalarFromLE(hex('7cd0e075fa7955ba52c02759a6c90dbbfc10e6d40aea8d283e407d88cf538a05'));
  assert.equal(scalarMultVfy(s, hex('2b3c6b8c4f3800e7aef6864025b4ed79bd599117e427c41bd47d93d654b4a51c')), null);
  assert.equal(scalarMultVfy(s, Buffer.alloc(32)), null);
  assert.equal(scalarMultVfy(s, Buffer.alloc(31, 1)), null);
  // A protocol run that receives the identity aborts (finish returns null).
  const a = startCPace('a', PRS, CI, SID, ADA);
  assert.equal(a.finish(lvCat(Buffer.alloc(32), ADB)), null);
});

test('CPace messages with wrong length prefixes are rejected (draft §5.3, §8)', () => {
  const good = lvCat(YB, ADB);
  assert.ok(parseMessage(good));
  assert.equal(parseMessage(good.subarray(0, good.length - 1)), null); // AD shorter than announced
  assert.equal(parseMessage(Buffer.concat([good, Buffer.from([0])])), null); // trailing byte
  const bad = Buffer.from(good);
  bad[0] = 0x21; // Y announced one byte longer
  assert.equal(parseMessage(bad), null);
  assert.equal(parseMessage(Buffer.alloc(0)), null);
  assert.equal(parseMessage(Buffer.from([0xff, 0xff, 0xff, 0xff])), null);
});

test('different passwords or sids give different ISKs; fresh scalars every run', () => {
  const a = startCPace('a', PRS, CI, SID, ADA);
  const b = startCPace('b', Buffer.from('Passw0rd'), CI, SID, ADB);
  assert.notDeepEqual(a.finish(b.msg)?.isk, b.finish(a.msg)?.isk);
  const a2 = startCPace('a', PRS, CI, SID, ADA);
  assert.notDeepEqual(a.msg, a2.msg);
});
