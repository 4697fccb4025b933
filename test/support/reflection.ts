import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);
const REFLECTION_PROTO = path.join(path.dirname(require.resolve('@grpc/reflection/package.json')), 'build/proto/grpc/reflection/v1/reflection.proto');

interface ReflectionResponse {
  listServicesResponse?: { service: Array<{ name: string }> };
  errorResponse?: { errorMessage: string };
}

type ReflectionStream = grpc.ClientDuplexStream<{ listServices: string }, ReflectionResponse>;
type ReflectionClient = grpc.Client & { ServerReflectionInfo(options: grpc.CallOptions): ReflectionStream };

/** List the services a server names through gRPC server reflection (v1). */
export async function listServicesByReflection(address: string, credentials: grpc.ChannelCredentials): Promise<string[]> {
  const definition = protoLoader.loadSync(REFLECTION_PROTO, { keepCase: false, defaults: true, oneofs: true });
  const pkg = grpc.loadPackageDefinition(definition) as unknown as {
    grpc: { reflection: { v1: { ServerReflection: new (address: string, credentials: grpc.ChannelCredentials) => ReflectionClient } } };
  };
  const client = new pkg.grpc.reflection.v1.ServerReflection(address, credentials);
  try {
    const stream = client.ServerReflectionInfo({ deadline: Date.now() + 5000 });
    const response = await new Promise<ReflectionResponse>((resolve, reject) => {
      stream.once('data', resolve);
      stream.once('error', reject);
      stream.write({ listServices: '' });
    });
    stream.end();
    if (response.errorResponse) throw new Error(response.errorResponse.errorMessage);
    return (response.listServicesResponse?.service ?? []).map((s) => s.name).sort();
  } finally {
    client.close();
  }
}
