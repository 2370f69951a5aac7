/** Generates the ORM matrix's Prisma client unless it is up to date. Returns whether it ran. */
export function generatePrismaClient(options?: { force?: boolean }): boolean
