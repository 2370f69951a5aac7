/**
 * A loopback TCP proxy between a test's pg clients and PostgreSQL that counts the client's
 * round trips: every Sync ('S') of the extended protocol and every simple Query ('Q') ends in one
 * ReadyForQuery, so their sum is the number of round trips, whatever the timing.
 */
import net from 'node:net'

export interface WireProxy {
  readonly port: number
  /** Round trips (Sync + Query messages) sent by clients since the last reset. */
  readonly roundTrips: number
  /** Every frontend message type seen since the last reset, in order (e.g. 'P', 'B', 'E', 'S'). */
  readonly messages: readonly string[]
  reset(): void
  /** Destroys every proxied connection (both sides), as a network failure would. */
  cutAll(): void
  close(): Promise<void>
}

export async function startWireProxy(targetHost: string, targetPort: number): Promise<WireProxy> {
  let messages: string[] = []
  const sockets = new Set<net.Socket>()
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, targetHost)
    sockets.add(client).add(upstream)
    for (const s of [client, upstream]) {
      s.on('error', () => undefined)
      s.on('close', () => {
        sockets.delete(s)
        client.destroy()
        upstream.destroy()
      })
    }
    upstream.pipe(client)
    let buffered = Buffer.alloc(0)
    let started = false // the startup message (and an SSLRequest) carry no type byte
    client.on('data', (chunk: Buffer) => {
      upstream.write(chunk)
      buffered = Buffer.concat([buffered, chunk])
      for (;;) {
        if (!started) {
          if (buffered.length < 8) return
          const length = buffered.readInt32BE(0)
          if (buffered.length < length) return
          const code = buffered.readInt32BE(4)
          buffered = buffered.subarray(length)
          if (code !== 80877103) started = true // not an SSLRequest: that was the startup message
          continue
        }
        if (buffered.length < 5) return
        const length = buffered.readInt32BE(1)
        if (buffered.length < length + 1) return
        messages.push(String.fromCharCode(buffered[0]!))
        buffered = buffered.subarray(length + 1)
      }
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as net.AddressInfo).port,
    get roundTrips() {
      return messages.filter((m) => m === 'S' || m === 'Q').length
    },
    get messages() {
      return messages
    },
    reset() {
      messages = []
    },
    cutAll() {
      for (const s of sockets) s.destroy()
    },
    close() {
      for (const s of sockets) s.destroy()
      return new Promise((resolve) => server.close(() => resolve()))
    },
  }
}
