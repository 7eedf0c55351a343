/** The hello: magic + version, and recognising peers that are not ferry. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HELLO_BYTES, PROTOCOL_VERSION, checkHelloPrefix, encodeHello, guessProtocol, parseHello } from '../src/wire/hello.js';

test('encode and parse our own hello', () => {
  const h = encodeHello();
  assert.equal(h.length, HELLO_BYTES);
  assert.deepEqual(parseHello(h), { ok: true, version: PROTOCOL_VERSION });
});

test('another version is reported with its number', () => {
  assert.deepEqual(parseHello(encodeHello(3)), { ok: false, reason: 'version', version: 3 });
});

test('prefix check rejects from the first wrong byte', () => {
  assert.equal(checkHelloPrefix(Buffer.from([0x89])), true);
  assert.equal(checkHelloPrefix(Buffer.from('G')), false);
  assert.equal(checkHelloPrefix(encodeHello().subarray(0, 5)), true);
});

test('non-ferry peers are named', () => {
  assert.equal(guessProtocol(Buffer.from('GET / HTTP/1.1\r\n')), 'an HTTP peer');
  assert.equal(guessProtocol(Buffer.from('HTTP/1.1 400 Bad')), 'an HTTP peer');
  assert.equal(guessProtocol(Buffer.from('SSH-2.0-OpenSSH')), 'an ssh peer');
  assert.equal(guessProtocol(Buffer.from([0x16, 0x03, 0x01, 0x02])), 'a TLS peer');
  assert.equal(guessProtocol(Buffer.from('hello')), 'not a ferry peer');
  const r = parseHello(Buffer.from('GET / HTTP/1.1\r\n'));
  assert.equal(r.ok, false);
});
