/**
 * bin/ferry runs the one-file bundle of the CLI (scripts/bundle.mjs) unless main.js is
 * newer: after a bare `tsc` the modules run, never a stale bundle; an npm pack, which
 * gives every file one time, runs the bundle. Checked on a copy of the launcher whose
 * two entries are stand-ins that say which ran. And the bundle must hold every module
 * it loads: a relative import() it could not follow would be looked up beside it.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { promises as fsp, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { REPO_ROOT, cleanupTmpDirs, tmpDir } from './support/tree.js';

after(cleanupTmpDirs);

const CLI = path.join(REPO_ROOT, 'dist/src/cli');

test('the launcher runs the bundle unless main.js is newer', async () => {
  const root = await tmpDir('ferry-launcher-');
  await fsp.mkdir(path.join(root, 'bin'));
  await fsp.mkdir(path.join(root, 'dist/src/cli'), { recursive: true });
  await fsp.copyFile(path.join(REPO_ROOT, 'bin/ferry'), path.join(root, 'bin/ferry'));
  const main = path.join(root, 'dist/src/cli/main.js');
  const bundle = path.join(root, 'dist/src/cli/ferry.bundle.js');
  await fsp.writeFile(main, "console.log('modules', process.argv.slice(2).join(' '));\n");
  const run = (): string => execFileSync('sh', [path.join(root, 'bin/ferry'), 'a b', 'c'], { encoding: 'utf8' }).trim();

  assert.equal(run(), 'modules a b c', 'no bundle: the modules');
  await fsp.writeFile(bundle, "console.log('bundle', process.argv.slice(2).join(' '));\n");
  const t = Date.now() / 1000 - 10;
  await fsp.utimes(main, t, t);
  await fsp.utimes(bundle, t + 5, t + 5);
  assert.equal(run(), 'bundle a b c', 'a bundle newer than main.js');
  await fsp.utimes(main, t + 5, t + 5);
  assert.equal(run(), 'bundle a b c', 'the same time (npm pack)');
  await fsp.utimes(main, t + 5.001, t + 5.001);
  assert.equal(run(), 'modules a b c', 'main.js rebuilt after the bundle (1 ms later)');
});

test('the bundle is current after the build and answers like the modules', () => {
  assert.ok(statSync(path.join(CLI, 'ferry.bundle.js')).mtimeMs >= statSync(path.join(CLI, 'main.js')).mtimeMs, 'npm run build writes the bundle after tsc');
  const version = (entry: string): string => execFileSync(process.execPath, [path.join(CLI, entry), '--version', '-v'], { encoding: 'utf8' });
  assert.equal(version('ferry.bundle.js'), version('main.js'));
});

test('the bundle holds every module it imports: no import() of a relative path is left', () => {
  const src = readFileSync(path.join(CLI, 'ferry.bundle.js'), 'utf8');
  // What esbuild cannot follow it leaves as import(x): only package and node: names may stay.
  const left = [...src.matchAll(/\bimport\(\s*([^)]*)\)/g)].map((m) => m[1]!.trim()).filter((arg) => !/^["'](node:|@)/.test(arg));
  assert.deepEqual(left, []);
});
