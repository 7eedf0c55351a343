/** Secrets: generation (entropy, typability), files, environment, warnings. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isFerryError } from '../src/core/errors.js';
import {
  GENERATED_SECRET_BITS,
  SECRET_ON_COMMAND_LINE_WARNING,
  generateSecret,
  readSecretFile,
  secretBytes,
  secretFromEnv,
  weakSecretWarning,
} from '../src/secure/secret.js';

test('generated secrets: 5 groups of 5 base32 characters, >= 100 bits, all different', () => {
  assert.ok(GENERATED_SECRET_BITS >= 100);
  const seen = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const s = generateSecret();
    assert.match(s, /^[a-z2-7]{5}(-[a-z2-7]{5}){4}$/);
    seen.add(s);
  }
  assert.equal(seen.size, 200);
  assert.equal(weakSecretWarning(generateSecret()), null);
});

test('secret file: first line without its line ending; empty or missing is a usage error', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-secret-'));
  try {
    const f = join(dir, 's');
    await writeFile(f, 'abc def\r\nsecond line\n');
    assert.equal(await readSecretFile(f), 'abc def');
    await writeFile(f, '\n');
    await assert.rejects(readSecretFile(f), (e) => isFerryError(e, 'FERRY_E_USAGE') && /empty/.test(e.message));
    await assert.rejects(readSecretFile(join(dir, 'missing')), (e) => isFerryError(e, 'FERRY_E_USAGE') && /ENOENT/.test(e.message));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('secret from the environment', () => {
  assert.equal(secretFromEnv({ FERRY_SECRET: 'x y' }), 'x y');
  assert.equal(secretFromEnv({}), undefined);
  assert.throws(() => secretFromEnv({ FERRY_SECRET: '' }), (e) => isFerryError(e, 'FERRY_E_USAGE'));
});

test('NFC normalisation: the same characters give the same bytes', () => {
  assert.deepEqual(secretBytes('caf\u00e9'), secretBytes('cafe\u0301'));
});

test('warnings', () => {
  assert.match(SECRET_ON_COMMAND_LINE_WARNING, /command line.*ps/);
  assert.match(weakSecretWarning('1234') ?? '', /short/);
});
