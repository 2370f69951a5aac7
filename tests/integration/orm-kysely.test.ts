/**
 * The ORM matrix (tests/setup/orm-matrix.ts) for Kysely 0.28 over `db.pool` (PostgresDialect).
 * Kysely sends every query through `db.pool.connect()`.
 */
import { Kysely, PostgresDialect, sql, type Generated, type Kysely as KyselyType } from 'kysely'
import { describeOrmMatrix, SERVER_STATE_SQL, type OrmQueries, type ServerState } from '../setup/orm-matrix.js'

interface Database {
  events: { id: Generated<string>; org_id: Generated<string>; kind: string; payload: string | null }
}

function queries(kysely: KyselyType<Database>): OrmQueries {
  return {
    insert: (kind, payload) => kysely.insertInto('events').values({ kind, payload }).execute(),
    insertFor: (orgId, kind, payload) => kysely.insertInto('events').values({ org_id: orgId, kind, payload }).execute(),
    list: (kind) =>
      kysely
        .selectFrom('events')
        .select(['org_id as orgId', 'payload'])
        .where('kind', '=', kind)
        .orderBy('id')
        .execute(),
    state: async () => (await sql<ServerState>`${sql.raw(SERVER_STATE_SQL)}`.execute(kysely)).rows[0]!,
  }
}

describeOrmMatrix({
  name: 'Kysely',
  async open(db) {
    // docs/orms.md, Kysely
    const kysely = new Kysely<Database>({ dialect: new PostgresDialect({ pool: db.pool }) })
    return {
      ...queries(kysely),
      transaction: (fn, isolation) => {
        const builder = kysely.transaction()
        return (isolation ? builder.setIsolationLevel(isolation) : builder).execute((trx) => fn(queries(trx)))
      },
      close: () => kysely.destroy(),
    }
  },
  // Kysely hands pg's DatabaseError over unchanged.
  pgErrorOf: (err) => err as Error,
  keepsRoutine: true,
})
