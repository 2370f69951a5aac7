/**
 * The ORM matrix (tests/setup/orm-matrix.ts) for Prisma 7 over `db.pool`, through its pg adapter
 * (`new PrismaPg(db.pool)`: it keeps a `pg.Pool` it is given). The client is generated from
 * tests/setup/prisma/schema.prisma by scripts/prisma-generate.mjs (the test global setup runs it).
 * Prisma sends lone statements through `db.pool.query` and interactive transactions through
 * `db.pool.connect()`.
 */
import { PrismaPg } from '@prisma/adapter-pg'
import { Prisma, PrismaClient } from '../setup/prisma/generated/client.js'
import { describeOrmMatrix, SERVER_STATE_SQL, type OrmQueries, type ServerState } from '../setup/orm-matrix.js'

const LEVELS = {
  serializable: Prisma.TransactionIsolationLevel.Serializable,
  'repeatable read': Prisma.TransactionIsolationLevel.RepeatableRead,
} as const

function queries(prisma: Prisma.TransactionClient): OrmQueries {
  return {
    insert: (kind, payload) => prisma.event.create({ data: { kind, payload } }),
    insertFor: (orgId, kind, payload) => prisma.event.create({ data: { orgId, kind, payload } }),
    list: (kind) =>
      prisma.event.findMany({ where: { kind }, select: { orgId: true, payload: true }, orderBy: { id: 'asc' } }),
    state: async () => (await prisma.$queryRawUnsafe<ServerState[]>(SERVER_STATE_SQL))[0]!,
  }
}

describeOrmMatrix({
  name: 'Prisma',
  async open(db) {
    // docs/orms.md, Prisma
    const prisma = new PrismaClient({ adapter: new PrismaPg(db.pool) })
    return {
      ...queries(prisma),
      transaction: (fn, isolation) =>
        prisma.$transaction((tx) => fn(queries(tx)), isolation ? { isolationLevel: LEVELS[isolation] } : {}),
      close: () => prisma.$disconnect(), // leaves db.pool alone
    }
  },
  // PrismaClientKnownRequestError (code P2039 for this one): the adapter's DriverAdapterError is
  // its `meta.driverAdapterError`, whose `cause` holds what the adapter kept of pg's error:
  // `code` and `originalCode` (the SQLSTATE), `message`, `severity`, not `routine`.
  pgErrorOf: (err) =>
    (err as { meta?: { driverAdapterError?: { cause?: { code?: unknown; message?: unknown } } } }).meta
      ?.driverAdapterError?.cause,
  keepsRoutine: false,
})
