// --exclude glob semantics (fs/exclude.ts), rsync-compatible where it matters.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileExcludes } from '../src/fs/exclude.js';
import { FerryError } from '../src/core/errors.js';

const ex = (pats: string[], p: string, isDir = false): boolean => compileExcludes(pats)(p, isDir);

test('a pattern without / matches the basename at any depth', () => {
  assert.equal(ex(['*.tmp'], 'a.tmp'), true);
  assert.equal(ex(['*.tmp'], 'x/y/a.tmp'), true);
  assert.equal(ex(['*.tmp'], 'x/y/a.tmpl'), false);
  assert.equal(ex(['cache'], 'x/cache', true), true);
  assert.equal(ex(['cache'], 'x/cache2', true), false);
});
test('* and ? never cross /', () => {
  assert.equal(ex(['a*b'], 'a/b'), false);
  assert.equal(ex(['a?b'], 'a/b'), false);
  assert.equal(ex(['a?b'], 'axb'), true);
});
test('** crosses directories, and **/ also matches zero of them', () => {
  assert.equal(ex(['data/**/*.bin'], 'data/x/y/z.bin'), true);
  assert.equal(ex(['data/**/*.bin'], 'data/z.bin'), true);
  assert.equal(ex(['/data/**'], 'data/x/y'), true);
  assert.equal(ex(['/data/**'], 'other/data/x'), false);
});
test('a leading / anchors at the transfer root', () => {
  assert.equal(ex(['/build'], 'build', true), true);
  assert.equal(ex(['/build'], 'src/build', true), false);
  assert.equal(ex(['/a/b'], 'a/b'), true);
  assert.equal(ex(['/a/b'], 'x/a/b'), false);
});
test('a pattern with / but no leading / matches any tail at a component boundary', () => {
  assert.equal(ex(['a/b'], 'x/a/b'), true);
  assert.equal(ex(['a/b'], 'xa/b'), false);
});
test('a trailing / matches directories only', () => {
  assert.equal(ex(['logs/'], 'x/logs', true), true);
  assert.equal(ex(['logs/'], 'x/logs', false), false);
});
test('[...] classes, negation and ranges', () => {
  assert.equal(ex(['file[0-9].txt'], 'file7.txt'), true);
  assert.equal(ex(['file[0-9].txt'], 'filex.txt'), false);
  assert.equal(ex(['file[!0-9].txt'], 'filex.txt'), true);
  assert.equal(ex(['file[!0-9].txt'], 'file7.txt'), false);
  assert.equal(ex(['file[^0-9].txt'], 'file/.txt'), false);
});
test('regex metacharacters are literal; backslash escapes', () => {
  assert.equal(ex(['a.b'], 'axb'), false);
  assert.equal(ex(['a+(b)'], 'a+(b)'), true);
  assert.equal(ex(['\\*'], '*'), true);
  assert.equal(ex(['\\*'], 'x'), false);
});
test('several patterns: any match excludes', () => {
  const f = compileExcludes(['*.tmp', '/cache/', '.git']);
  assert.equal(f('a.tmp', false), true);
  assert.equal(f('cache', true), true);
  assert.equal(f('sub/.git', true), true);
  assert.equal(f('keep.txt', false), false);
});
test('empty pattern is a usage error', () => {
  assert.throws(() => compileExcludes(['']), FerryError);
  assert.equal(compileExcludes([])('anything', false), false);
});
test('a range out of order is a usage error (FerryError, not a SyntaxError)', () => {
  assert.throws(() => compileExcludes(['file[z-a]']), (e: unknown) => e instanceof FerryError && /out of order/.test(e.message));
});
