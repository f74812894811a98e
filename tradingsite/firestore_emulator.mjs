// The Firestore emulator (npm @firestore-emulator/server) for the test suite and `make run`:
// listens on 127.0.0.1 at the port given as the only argument, prints one ready line, and runs
// until terminated (SIGTERM or SIGINT), when it shuts the gRPC server down. It keeps documents
// in memory only.
//
//   node tradingsite/firestore_emulator.mjs 8086
import { FirestoreServer } from "@firestore-emulator/server";
import { ServerCredentials } from "@grpc/grpc-js";

const port = Number.parseInt(process.argv[2] ?? "", 10);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error("usage: node tradingsite/firestore_emulator.mjs PORT");
  process.exit(2);
}

const emulator = new FirestoreServer();
try {
  // The package's start() binds every interface; an unauthenticated database belongs on the
  // loopback only, so its gRPC server is bound here instead.
  await new Promise((resolve, reject) => {
    emulator.server.bindAsync(`127.0.0.1:${port}`, ServerCredentials.createInsecure(), (error) =>
      error ? reject(error) : resolve(undefined),
    );
  });
} catch (error) {
  console.error(`the Firestore emulator could not listen on 127.0.0.1:${port}: ${error}`);
  process.exit(1);
}
console.log(`firestore emulator ready on 127.0.0.1:${port}`);

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    emulator.stop();
    process.exit(0);
  });
}
