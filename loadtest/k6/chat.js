// Chatters in one room over WebSocket, like `loadtest chat`: every virtual user joins, one in
// SENDER_EVERY sends a stamped message every second, and every user measures the delivery
// latency of the stamps it receives (one machine's clock).
//
//   k6 run -e ROOM=ws://127.0.0.1:8090/v1/rooms/demo/ws -e TOKEN=... -e VUS=200 loadtest/k6/chat.js
//
// TOKEN: a JWT the relay accepts (signed with its jwt_secret), needed to send; without one the
// users only receive.
import ws from 'k6/ws';
import { check } from 'k6';
import { Trend, Counter } from 'k6/metrics';

const ROOM = __ENV.ROOM || 'ws://127.0.0.1:8090/v1/rooms/demo/ws';
const TOKEN = __ENV.TOKEN || '';
const SENDER_EVERY = parseInt(__ENV.SENDER_EVERY || '10', 10);
const SECONDS = parseInt(__ENV.SECONDS || '30', 10);

export const options = {
  vus: parseInt(__ENV.VUS || '100', 10),
  iterations: parseInt(__ENV.VUS || '100', 10),
  thresholds: {
    delivery_ms: ['p(99)<500'],
    ws_connecting: ['p(99)<1000'],
    closed_early: ['count==0'],
  },
};

const deliveryMs = new Trend('delivery_ms', true);
const closedEarly = new Counter('closed_early');

export default function () {
  const sender = TOKEN !== '' && __VU % SENDER_EVERY === 0;
  const url = sender ? `${ROOM}?token=${TOKEN}` : ROOM;
  const started = Date.now();
  const res = ws.connect(url, null, (socket) => {
    socket.on('open', () => {
      if (sender) {
        socket.setInterval(() => {
          socket.send(JSON.stringify({ op: 'send', text: `k6 ${Date.now()}` }));
        }, 1000);
      }
      socket.setTimeout(() => socket.close(), SECONDS * 1000);
    });
    socket.on('message', (data) => {
      const m = /k6 (\d+)/.exec(data);
      if (m) {
        deliveryMs.add(Date.now() - parseInt(m[1], 10));
      }
    });
    socket.on('close', () => {
      if (Date.now() - started < SECONDS * 1000 - 100) {
        closedEarly.add(1);
      }
    });
  });
  check(res, { 'upgraded (101)': (r) => r && r.status === 101 });
}
