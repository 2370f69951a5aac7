/**
 * The ORM matrix (tests/setup/orm-matrix.ts) for Knex 3 over `db.pool`: its `connectionPool`
 * option (Knex 3.3.0 and later) takes a pg Pool. Knex sends every query through
 * `db.pool.connect()`, and `select version();` on its first checkout.
 */
import { knex, type Knex } from 'knex'
import { describeOrmMatrix, SERVER_STATE_SQL, type OrmQueries, type ServerState } from '../setup/orm-matrix.js'

function queries(k: Knex | Knex.Transaction): OrmQueries {
  return {
    insert: async (kind, payload) => k('events').insert({ kind, payload }),
    insertFor: async (orgId, kind, payload) => k('events').insert({ org_id: orgId, kind, payload }),
    list: async (kind) => k('events').select({ orgId: 'org_id' }, 'payload').where({ kind }).orderBy('id'),
    state: async () => (await k.raw<{ rows: ServerState[] }>(SERVER_STATE_SQL)).rows[0]!,
  }
}

describeOrmMatrix({
  name: 'Knex',
  async open(db) {
    // docs/orms.md, Knex
    const k = knex({ client: 'pg', connectionPool: db.pool })
    return {
      ...queries(k),
      transaction: (fn, isolation) => k.transaction((trx) => fn(queries(trx)), isolation ? { isolationLevel: isolation } : {}),
      close: () => k.destroy(), // leaves db.pool alone: Knex does not own it
    }
  },
  // Knex hands pg's DatabaseError over, with the SQL prepended to its message.
  pgErrorOf: (err) => err as Error,
  keepsRoutine: true,
})
