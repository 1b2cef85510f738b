# Three NixOS VMs running services.blixard: they form one cluster over mDNS and the static
# one leader, and each daemon is active with its QEMU from the module.
# Run with network and Nix: `nix build .#checks.x86_64-linux.cluster -L` (the package takes its npm
# dependencies by importNpmLock: no hash to fill in). Not run in this repository's own test suite (no nixpkgs here).
{ self }:
let
  node = { pkgs, ... }: {
    environment.systemPackages = [ pkgs.curl ];
    imports = [ self.nixosModules.blixard ];
    virtualisation.memorySize = 2048;
    # a test-only key: built into the store on purpose, readable only by root after the copy
    systemd.tmpfiles.rules = [ "f+ /etc/blixard/cluster.key 0400 root root - /key/swarm/psk/1.0.0/\\n/base16/\\n0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" ];
    services.blixard = {
      enable = true;
      clusterKeyFile = "/etc/blixard/cluster.key";
      openFirewall = true;
      settings = { metricsPort = 9630; bootstrapExpect = 3; };
    };
  };
in
{
  name = "blixard-cluster";
  nodes = { n1 = node; n2 = node; n3 = node; };
  testScript = ''
    start_all()
    for m in (n1, n2, n3):
        m.wait_for_unit("blixard.service")
        # the unit's QEMU is the Ceph-enabled one from the module
        m.succeed("grep -q qemuBinary /etc/blixard/config.toml")
        m.succeed("systemctl show blixard -p LoadCredential | grep -q cluster-key")
    # the three find each other over mDNS (port opened by openFirewall), form one cluster, elect one leader
    def is_leader(m):
        return m.succeed("curl -s http://127.0.0.1:9630/metrics | grep '^blixard_raft_is_leader ' | cut -d' ' -f2").strip() == "1"
    n1.wait_until_succeeds("curl -s http://127.0.0.1:9630/metrics | grep -q '^blixard_raft_commit_index [1-9]'", timeout=180)
    assert sum(1 for m in (n1, n2, n3) if is_leader(m)) == 1, "exactly one leader"
  '';
}
