/**
 * External tools in tests: find them, and decide what a missing one means.
 *
 * Some tests drive real programs (rsync, sshd, qemu). On a developer machine a
 * missing program should not turn the suite red, so the test skips and says why.
 * In CI (`CI=true`, set by .ci/run) every tool is installed on purpose, so a
 * missing one is a broken environment and must fail loudly instead of silently
 * skipping the very tests that matter.
 */
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { TestContext } from 'node:test';

/** Directories searched after $PATH: daemons such as sshd live in sbin. */
const EXTRA_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

/** Absolute path of an executable named `name`, or undefined when there is none. */
export function findTool(name: string): string | undefined {
  if (name.includes('/')) return isExecutable(name) ? name : undefined;
  const dirs = [...(process.env['PATH'] ?? '').split(delimiter).filter((d) => d !== ''), ...EXTRA_DIRS];
  for (const dir of dirs) {
    const p = join(dir, name);
    if (isExecutable(p)) return p;
  }
  return undefined;
}

function isExecutable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** True when running under CI, where a missing tool is a failure, not a skip. */
export function isCI(): boolean {
  return process.env['CI'] === 'true';
}

/**
 * Return the path of each tool, or skip the test (outside CI) / throw (in CI) when
 * one is missing. Usage:
 *
 *   const tools = requireTools(t, 'sshd', 'ssh-keygen');
 *   if (!tools) return;   // skipped
 */
export function requireTools(t: TestContext, ...names: string[]): Record<string, string> | undefined {
  const found: Record<string, string> = {};
  const missing: string[] = [];
  for (const n of names) {
    const p = findTool(n);
    if (p === undefined) missing.push(n);
    else found[n] = p;
  }
  if (missing.length === 0) return found;
  const reason = `needs ${missing.join(', ')} (not installed)`;
  if (isCI()) throw new Error(`${reason}; CI=true forbids skipping`);
  t.skip(reason);
  return undefined;
}

/** Single-tool form of requireTools: the path, or undefined when the test was skipped. */
export function requireTool(t: TestContext, name: string): string | undefined {
  return requireTools(t, name)?.[name];
}
