import { readFileSync } from 'node:fs';
import { nativeStatus } from '../native/index.js';

/** The package version, read once from package.json next to dist/. */
export const VERSION: string = (() => {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
})();

/**
 * `ferry --version` is one line; with `-v` it also says which data-plane paths are in
 * use and why (records: native|js; ktls: available or not, and why), as the JSON
 * summary's `native` does.
 */
export async function versionText(verbose: boolean): Promise<string> {
  const head = `ferry ${VERSION}\n`;
  if (!verbose) return head;
  const s = nativeStatus();
  // secure/ktls is loaded only here: the commands that import VERSION need none of it.
  const k = (await import('../secure/ktls.js')).ktlsSupport();
  const lines = [
    `node ${process.version}, ${process.versions.openssl ? `OpenSSL ${process.versions.openssl}` : 'no OpenSSL'}`,
    `addon: ${s.addon ?? 'none'}${s.addon ? '' : ` (${s.reason})`}`,
    `records: ${s.records} (${s.recordsReason})`,
    `ktls: ${k.available ? 'available' : 'unavailable'} (${k.reason})`,
    `copy: ${s.copy}`,
    `network files, content hash, write-behind, direct I/O (big files; cold small files read, received small files written): ${s.files}`,
    `walk: ${s.walk}`,
  ];
  return head + lines.join('\n') + '\n';
}
