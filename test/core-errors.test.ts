/**
 * The one mapping of foreign error codes (src/core/errors.ts): a peer's code string
 * (peerErrorCode) and a native call's errno (errnoError / errnoName) become the same
 * FerryError codes as everywhere else.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { constants as osConstants } from 'node:os';
import { ErrorCodes, errnoError, errnoName, fromSystemError, peerErrorCode } from '../src/core/errors.js';

test('peerErrorCode: a known code is kept, anything else is FERRY_E_REMOTE', () => {
  assert.equal(peerErrorCode('FERRY_E_NOSPC'), ErrorCodes.NOSPC);
  assert.equal(peerErrorCode(ErrorCodes.PATH), ErrorCodes.PATH);
  for (const x of ['FERRY_E_NOPE', '', 'toString', '__proto__', 42, null, undefined, {}]) assert.equal(peerErrorCode(x), ErrorCodes.REMOTE, String(x));
});

test('errnoError: either sign of a native errno gives the Node-style error fromSystemError maps', () => {
  const enospc = osConstants.errno.ENOSPC;
  for (const n of [enospc, -enospc]) {
    const e = errnoError(n, 'write', 'a/b');
    assert.equal(e.code, 'ENOSPC');
    assert.equal(e.errno, -enospc);
    assert.equal(e.syscall, 'write');
    assert.equal(e.path, 'a/b');
    assert.equal(fromSystemError(e, 'write', 'a/b').code, ErrorCodes.NOSPC);
  }
  const loop = fromSystemError(errnoError(osConstants.errno.ELOOP, 'open'), 'read', 'x');
  assert.equal(loop.code, ErrorCodes.READ);
  assert.match(loop.message, /ELOOP/);
  assert.equal(errnoError(99999, 'open').code, 'EIO', 'an unknown number');
  assert.equal(errnoName(-osConstants.errno.ENOENT), 'ENOENT');
  assert.equal(errnoName(99999), undefined);
});
