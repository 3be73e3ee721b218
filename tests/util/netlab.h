// A network of namespaces for tests that need what a real network does:
// each host (a server, a client node) is a network namespace of its own,
// joined by a veth pair to a bridge in the test's own network namespace,
// with an address 10.201.0.N/24. The test reaches every host; a fault cuts
// two hosts apart, cuts one off from all, or drops a share of its packets,
// by firewall rules inside the hosts' namespaces (packets vanish, as in a
// partition: no reset, no error, the peers' TCP retransmits). This kernel
// has no netem qdisc, so there is no delay fault.
//
// The bridge lives in the test process's network namespace, which must be
// a private one (EnterPrivateNetwork, first thing in main): the machine's
// own network is never touched. Only namespaces made here are removed, by
// the destructor; ones left by a test process that died are removed by
// the next lab.
#ifndef RANGEFS_TESTS_UTIL_NETLAB_H_
#define RANGEFS_TESTS_UTIL_NETLAB_H_

#include <map>
#include <string>
#include <vector>

namespace rangefs::testing {

class NetLab {
 public:
  // Moves this process into a new network namespace with loopback up. Call
  // it before any thread starts (threads keep the namespace they were made
  // in). False, with the reason, when it cannot (not root).
  static bool EnterPrivateNetwork(std::string* why);
  // Why no lab can be made in this process ("" if one can).
  static std::string Unavailable();

  NetLab() = default;
  ~NetLab();
  NetLab(const NetLab&) = delete;
  NetLab& operator=(const NetLab&) = delete;

  // Makes the bridge. False with the reason if it cannot.
  bool Init(std::string* why);
  // Adds host `name` (a namespace with one interface on the bridge) and
  // returns its address; "" with the reason on failure.
  std::string AddHost(const std::string& name, std::string* why);
  bool HasHost(const std::string& name) const { return hosts_.count(name); }
  std::string Address(const std::string& name) const;
  // The namespace's path, for Subprocess::set_netns.
  std::string NetnsPath(const std::string& name) const;

  // Packets between hosts `a` and `b` are dropped, both ways.
  void Cut(const std::string& a, const std::string& b);
  void Heal(const std::string& a, const std::string& b);
  // Every packet to or from `name` is dropped (also the test's own).
  void Isolate(const std::string& name);
  void Rejoin(const std::string& name);
  // A share `p` (0 to 1) of the packets to and from `name` is dropped;
  // 0 ends it.
  void Lossy(const std::string& name, double p);
  // The first fault rule that could not be set or removed ("" if none): a
  // scenario whose cut did not happen proves nothing.
  const std::string& error() const { return error_; }

 private:
  struct Host {
    std::string netns;  // Its name under /run/netns.
    std::string address;
    int index = 0;
  };
  // Runs `argv` (ip, iptables); false with its output in *why on failure.
  static bool Run(const std::vector<std::string>& argv, std::string* why);
  // iptables in host `name`'s namespace; a rule kept to undo it.
  void Rule(const std::string& name, const std::vector<std::string>& rule,
            bool add);
  static void RemoveOrphans();

  bool ready_ = false;
  std::string lab_;     // This process's count of labs before this one.
  std::string prefix_;  // Of its namespaces: rfs<pid>-<lab>-
  std::string bridge_;
  std::map<std::string, Host> hosts_;
  std::map<std::string, double> lossy_;
  std::string error_;
};

}  // namespace rangefs::testing

#endif  // RANGEFS_TESTS_UTIL_NETLAB_H_
