/**
 * The ORM matrix (tests/setup/orm-matrix.ts) for Drizzle (node-postgres driver) over `db.pool`.
 * Drizzle sends lone statements through `db.pool.query` and transactions through
 * `db.pool.connect()` (because `db.pool instanceof pg.Pool`).
 */
import { asc, eq, sql } from 'drizzle-orm'
import { drizzle, type NodePgDatabase } from 'drizzle-orm/node-postgres'
import { bigserial, pgTable, text } from 'drizzle-orm/pg-core'
import { describeOrmMatrix, SERVER_STATE_SQL, type OrmQueries, type ServerState } from '../setup/orm-matrix.js'

const events = pgTable('events', {
  id: bigserial('id', { mode: 'number' }).primaryKey(),
  // The database fills it from the tenant setting.
  orgId: text('org_id').notNull().default(sql`current_setting('app.tenant_id', true)`),
  kind: text('kind').notNull(),
  payload: text('payload'),
})

type Db = Pick<NodePgDatabase, 'insert' | 'select' | 'execute'>

function queries(orm: Db): OrmQueries {
  return {
    insert: async (kind, payload) => orm.insert(events).values({ kind, payload }),
    insertFor: async (orgId, kind, payload) => orm.insert(events).values({ orgId, kind, payload }),
    list: async (kind) =>
      orm.select({ orgId: events.orgId, payload: events.payload }).from(events).where(eq(events.kind, kind)).orderBy(asc(events.id)),
    state: async () => (await orm.execute<{ isolation: string; tenant: string }>(sql.raw(SERVER_STATE_SQL))).rows[0] as ServerState,
  }
}

describeOrmMatrix({
  name: 'Drizzle',
  async open(db) {
    // docs/orms.md, Drizzle
    const orm = drizzle({ client: db.pool })
    return {
      ...queries(orm),
      transaction: (fn, isolation) =>
        orm.transaction((tx) => fn(queries(tx)), isolation ? { isolationLevel: isolation } : undefined),
      close: async () => undefined,
    }
  },
  // DrizzleQueryError (message "Failed query: ..."): pg's DatabaseError is its `cause`.
  pgErrorOf: (err) => (err as { cause?: Error }).cause,
  keepsRoutine: true,
})
