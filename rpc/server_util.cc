#include "rpc/server_util.h"

#include <signal.h>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "rpc/convert.h"

namespace rangefs::rpc {

absl::StatusOr<std::unique_ptr<grpc::Server>> StartServer(
    const std::string& address, const std::vector<grpc::Service*>& services,
    int* bound_port) {
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(),
                           bound_port);
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.SetMaxSendMessageSize(kMaxMessageBytes);
  // Refuse a port another process already listens on.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  for (grpc::Service* s : services) builder.RegisterService(s);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || *bound_port == 0) {
    return MakeError(Errc::kUnavailable,
                     absl::StrCat("cannot listen on ", address,
                                  " (address in use or not local?)"));
  }
  return server;
}

grpc::ServerUnaryReactor* AnswerPing(grpc::CallbackServerContext* ctx,
                                     const proto::PingRequest* req,
                                     proto::PingReply* reply,
                                     const std::string& server) {
  return RunInline(ctx, [=] {
    reply->set_payload(req->payload());
    reply->set_server(server);
  });
}

grpc::ServerUnaryReactor* AnswerSetFault(grpc::CallbackServerContext* ctx,
                                         const proto::SetFaultRequest* req,
                                         proto::SetFaultReply* reply) {
  return RunInline(ctx, [=] { ApplySetFault(*req, reply); });
}

namespace {
sigset_t TerminationSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}
}  // namespace

void BlockTerminationSignals() {
  sigset_t set = TerminationSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int WaitForTerminationSignal() {
  sigset_t set = TerminationSignals();
  int sig = 0;
  sigwait(&set, &sig);
  return sig;
}

}  // namespace rangefs::rpc
