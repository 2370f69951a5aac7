// A loopback TCP proxy for the benchmark's latency variant: it sits between the pools and
// PostgreSQL, delays every chunk by `delayMs` in each direction (order preserved), and counts
// round trips.
//
// It runs in a worker thread of the benchmark's process: its timers must not wait behind the
// benchmark's own event loop, or the variant that spends more CPU in the client would also be
// charged more "network" latency than the others.
//
//   const proxy = await startLatencyProxy({ host, port, delayMs: 1 })
//   new pg.Pool({ host: '127.0.0.1', port: proxy.port, ... })
//   await proxy.trips()   // round trips so far, over every connection
//   await proxy.close()
import net from 'node:net'
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads'

/**
 * @param {{ host: string, port: number, delayMs: number }} target PostgreSQL, and the delay to add each way
 * @returns {Promise<{ port: number, trips(): Promise<number>, close(): Promise<void> }>}
 */
export async function startLatencyProxy({ host, port, delayMs }) {
  const worker = new Worker(new URL(import.meta.url), { workerData: { host, port, delayMs } })
  worker.unref() // never what keeps the benchmark's process alive, should it stop early
  // One question at a time: the benchmark asks sequentially, so the next message is the answer.
  let pending
  const settle = (fn, value) => {
    const p = pending
    pending = undefined
    p?.[fn](value)
  }
  worker.on('message', (m) => settle('resolve', m))
  worker.on('error', (err) => settle('reject', err))
  const ask = async (type) => {
    const answer = await new Promise((resolve, reject) => {
      pending = { resolve, reject }
      if (type !== 'listening') worker.postMessage(type)
    })
    if (answer.type !== type) throw new Error(`the latency proxy answered ${answer.type} to ${type}`)
    return answer.value
  }
  const listening = await ask('listening')
  return {
    port: listening,
    trips: () => ask('trips'),
    close: async () => {
      await ask('closed')
      await worker.terminate()
    },
  }
}

/**
 * Copies `from` to `to`, each chunk no sooner than `delayMs` after it arrived, in arrival order.
 * Each chunk arms its own timer, and every timer that fires writes the oldest chunk still
 * waiting: whatever order the timers fire in, the k-th firing happens after the k-th chunk's own
 * timer could have, so order holds and no chunk leaves early. The end of the stream is queued
 * like a chunk, so it follows the last data. No backpressure: PostgreSQL's answers here are small.
 */
function delayedPipe(from, to, delayMs) {
  const END = Symbol('end')
  const queue = []
  const forward = () => {
    const chunk = queue.shift()
    if (chunk === END) to.end()
    else if (!to.destroyed) to.write(chunk)
  }
  const push = (chunk) => {
    queue.push(chunk)
    if (delayMs > 0) setTimeout(forward, delayMs)
    else forward()
  }
  from.on('data', push)
  from.on('end', () => push(END))
}

// Terminate: 'X' and a length of 4, nothing else.
const isTerminate = (chunk) => chunk.length === 5 && chunk[0] === 0x58

function runProxy({ host, port, delayMs }) {
  let trips = 0
  const sockets = new Set()
  const server = net.createServer({ noDelay: true }, (client) => {
    const upstream = net.connect({ host, port, noDelay: true })
    for (const s of [client, upstream]) {
      sockets.add(s)
      s.on('close', () => sockets.delete(s))
      // A broken side breaks the other: the pool sees a lost connection, as it would without us.
      s.on('error', () => {
        client.destroy()
        upstream.destroy()
      })
    }
    // A round trip begins each time the client speaks after the server did (or first): a burst
    // of pipelined messages written before any answer arrived is one trip, however many
    // statements or Syncs it carries.
    // A lone Terminate (a pool closing an idle connection) is not counted: no operation waits on it.
    let clientsTurn = true
    client.on('data', (chunk) => {
      if (clientsTurn && !isTerminate(chunk)) trips++
      clientsTurn = false
    })
    upstream.on('data', () => {
      clientsTurn = true
    })
    delayedPipe(client, upstream, delayMs)
    delayedPipe(upstream, client, delayMs)
  })
  server.listen(0, '127.0.0.1', () => parentPort.postMessage({ type: 'listening', value: server.address().port }))
  parentPort.on('message', (type) => {
    if (type === 'trips') parentPort.postMessage({ type, value: trips })
    if (type === 'closed') {
      for (const s of sockets) s.destroy()
      server.close(() => parentPort.postMessage({ type, value: undefined }))
    }
  })
}

if (!isMainThread && workerData?.delayMs !== undefined) runProxy(workerData)
