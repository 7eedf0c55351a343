/**
 * Which file runs the CLI, chosen as bin/ferry chooses: the one-file bundle
 * (scripts/bundle.mjs) unless main.js is newer (a bare tsc since the bundle was built),
 * so the tests run what users run and never a stale bundle. No imports beyond node's:
 * the kernel lab's tests use it too.
 */
import { statSync } from 'node:fs';
import path from 'node:path';

export function cliEntry(repoRoot: string): string {
  const main = path.join(repoRoot, 'dist/src/cli/main.js');
  const bundle = path.join(repoRoot, 'dist/src/cli/ferry.bundle.js');
  try {
    return statSync(main).mtimeMs > statSync(bundle).mtimeMs ? main : bundle;
  } catch {
    return main;
  }
}
