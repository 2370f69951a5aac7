/**
 * A database of its own for each test file (see tests/setup/database.ts), on the server the global
 * setup started.
 */
import { inject } from 'vitest'
import { createDatabase, type TestDatabase } from './database.js'

export {
  CONNECTION_STATE_SQL,
  STATE_SQL,
  type ConnectionState,
  type State,
  type TestDatabase,
} from './database.js'

export { NEEDS_PGBOUNCER } from './pgbouncer.js'

/**
 * Whether the PgBouncer (`'pgBouncerPort'`) or small-pool PgBouncer (`'pgBouncerSmallPort'`) runs,
 * for a block of tests through it to run or to be skipped with `it.skip(NEEDS_PGBOUNCER)`. Where
 * PgBouncer is required (PG_TENANT_REQUIRE_PGBOUNCER=1, as .ci/run sets) it throws instead, which
 * fails the file: no PgBouncer test can be skipped there.
 */
export function pgBouncerAvailable(which: 'pgBouncerPort' | 'pgBouncerSmallPort' = 'pgBouncerPort'): boolean {
  if (inject(which) !== 0) return true
  if (inject('pgBouncerRequired')) {
    throw new Error(`PG_TENANT_REQUIRE_PGBOUNCER=1 but ${which} is 0: the PgBouncer tests may not be skipped`)
  }
  return false
}

export function createTestDatabase(): Promise<TestDatabase> {
  return createDatabase(inject('pgAdminUrl'), inject('pgBouncerPort'), inject('pgBouncerSmallPort'))
}
