/**
 * dist/ as `npm test` leaves it, for tests that run the built command line or entries: rebuilt
 * when a file it needs is missing or older than the sources (a bare `npx vitest run` after an edit).
 */
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

/** The repository's root. */
export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')

function newestSource(dir: string): number {
  let newest = 0
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name)
    newest = Math.max(newest, entry.isDirectory() ? newestSource(file) : fs.statSync(file).mtimeMs)
  }
  return newest
}

/** Builds the package unless every file of `files` (paths under dist/) is newer than src/. */
export function ensureBuilt(files: readonly string[]): void {
  const sources = Math.max(newestSource(path.join(root, 'src')), fs.statSync(path.join(root, 'tsup.config.ts')).mtimeMs)
  const built = files.map((f) => path.join(root, 'dist', f))
  if (built.every((f) => fs.existsSync(f) && fs.statSync(f).mtimeMs >= sources)) return
  execFileSync(process.execPath, [path.join(root, 'node_modules/tsup/dist/cli-default.js')], { cwd: root, stdio: 'ignore' })
}
