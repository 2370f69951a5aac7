/**
 * pg-tenant as the integration tests import it: everything from src/index.ts, except that
 * `createTenantPool` turns the release canary on (`verifyRelease: true`) unless a test says
 * otherwise, and remembers each pool it made. tests/setup/canary.ts fails a test file in which
 * any of them found a dirty client. The library itself reads no test switch.
 */
import {
  createTenantPool as createUnchecked,
  type PgPoolLike,
  type TenantPool,
  type TenantPoolOptions,
} from '../../src/index.js'

export * from '../../src/index.js'

const made: TenantPool[] = []

/** `createTenantPool` with `verifyRelease: true` by default. */
export function createTenantPool<P extends PgPoolLike>(pool: P, options: TenantPoolOptions = {}): TenantPool<P> {
  const db = createUnchecked(pool, { verifyRelease: true, ...options })
  made.push(db as unknown as TenantPool)
  return db
}

/** Totals over every pool made through this module in this test file. */
export function canaryTotals(): { pools: number; verified: number; dirty: number } {
  let verified = 0
  let dirty = 0
  for (const db of made) {
    const stats = db.stats()
    verified += stats.verified
    dirty += stats.dirty
  }
  return { pools: made.length, verified, dirty }
}
