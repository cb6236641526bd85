// Checks that the committed bundle (dist/) is what the sources build to: builds into a temporary
// directory and compares the two trees byte for byte. Exits 1, naming the differences, when they
// differ. The build is reproducible (vite.config.ts: fixed names, no timestamps or source maps).

import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
const STALE = 'server/dashboard/dist is stale: run npm run build in server/dashboard';

function files(dir) {
  if (!existsSync(dir)) return [];
  const out = [];
  const walk = (d) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out.push(relative(dir, p));
    }
  };
  walk(dir);
  return out;
}

const tmp = mkdtempSync(join(tmpdir(), 'aerekos-dashboard-dist-'));
try {
  const vite = join(root, 'node_modules', 'vite', 'bin', 'vite.js');
  const build = spawnSync(process.execPath, [vite, 'build', '--outDir', tmp, '--emptyOutDir', '--logLevel', 'warn'], { cwd: root, stdio: 'inherit' });
  if (build.status !== 0) {
    console.error('check-dist: the build failed');
    process.exitCode = build.status ?? 1;
  } else {
    compare();
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}

function compare() {
  const want = files(tmp);
  const have = files(dist);
  const problems = [];
  for (const f of want) {
    if (!have.includes(f)) problems.push(`missing from dist/: ${f}`);
    else if (!readFileSync(join(tmp, f)).equals(readFileSync(join(dist, f)))) problems.push(`differs: dist/${f}`);
  }
  for (const f of have) if (!want.includes(f)) problems.push(`not built any more: dist/${f}`);
  if (problems.length > 0) {
    console.error(problems.map((p) => `  ${p}`).join('\n'));
    console.error(STALE);
    process.exitCode = 1;
    return;
  }
  console.log(`server/dashboard/dist is up to date (${want.length} files)`);
}
