# services.blixard: one blixard-node per NixOS host, guests run through microvm.nix.
# Expects microvm.nix's host module to be imported too (the flake's nixosModules.blixard
# does both); `services.blixard.package` is set by the flake, or by you without it.
{ config, lib, pkgs, ... }:
let
  cfg = config.services.blixard;
  inherit (lib) mkOption mkEnableOption mkIf mkMerge mkDefault mkForce types literalExpression;

  settingsFormat = pkgs.formats.toml { };
  user = "blixard";
  microvmStateDir = "/var/lib/microvms";

  # TOML has no null: unset optional values are left out, node/config.ts applies its defaults.
  dropNulls = lib.filterAttrs (_: v: v != null);

  # config.toml: exactly the keys node/config.ts reads (it refuses unknown ones); extraSettings
  # (rpcPort, metricsPort, raft.*, logLevel, …) wins on any key.
  settings = lib.recursiveUpdate
    ({
      name = cfg.name;
      dataDir = cfg.dataDir;
      listen = cfg.listenAddresses;
      clusterKeyFile = cfg.clusterKeyFile;
      bootstrap = cfg.bootstrapPeers;
      mdns = cfg.mdns;
      labels = cfg.labels;
      capacity = dropNulls cfg.capacity;
    } // lib.optionalAttrs (cfg.ceph.monitors != [ ]) {
      # the daemon's own Ceph client (volume RPCs, fencing, QEMU's rbd drives)
      ceph = dropNulls {
        conf = "/etc/blixard/ceph.conf";
        pool = cfg.ceph.pool;
        id = cfg.ceph.user;
        keyring = cfg.ceph.keyringFile;
      };
    })
    cfg.extraSettings;

  configFile = settingsFormat.generate "blixard.toml" settings;

  # host.toml: what the NixOS guest path needs beyond node/config.ts's keys (default VMM,
  # microvm.nix state dir and pinned guest inputs, Ceph). A file of its own so that
  # config.toml stays loadable by today's node/config.ts, which refuses unknown keys.
  hostSettings = {
    hypervisor = cfg.hypervisor;
    microvm = { stateDir = microvmStateDir; } // lib.optionalAttrs (dropNulls cfg.guestFlakeInputs != { }) {
      guestInputs = dropNulls cfg.guestFlakeInputs;
    };
  } // lib.optionalAttrs (cfg.ceph.monitors != [ ]) {
    ceph = dropNulls {
      monitors = cfg.ceph.monitors;
      pool = cfg.ceph.pool;
      user = cfg.ceph.user;
      keyringFile = cfg.ceph.keyringFile;
      conf = "/etc/blixard/ceph.conf";
    };
  };

  hostFile = settingsFormat.generate "blixard-host.toml" hostSettings;

  # A client-only ceph.conf for the daemon (rbd create/map) and for QEMU's librbd in microvm@ units.
  cephConf = pkgs.writeText "blixard-ceph.conf" (''
    [global]
    mon_host = ${lib.concatStringsSep "," cfg.ceph.monitors}
  '' + lib.optionalString (cfg.ceph.keyringFile != null) ''
    keyring = ${cfg.ceph.keyringFile}
  '');

  # TCP ports of /ip4|ip6/…/tcp/PORT listen addresses, for openFirewall.
  tcpPorts = lib.unique (lib.concatMap
    (a: let m = builtins.match ".*/tcp/([0-9]+)(/.*)?" a; in
      if m == null then [ ] else [ (lib.toInt (builtins.head m)) ])
    cfg.listenAddresses);

  bridgeNames = builtins.attrNames cfg.bridges;
in
{
  options.services.blixard = {
    enable = mkEnableOption "the Blixard node daemon (blixard-node)";

    package = mkOption {
      type = types.package;
      defaultText = literalExpression "blixard.packages.\${system}.blixard";
      description = "The Blixard package (blixard-node and the blixard CLI).";
    };

    name = mkOption {
      type = types.strMatching "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?";
      default = config.networking.hostName;
      defaultText = literalExpression "config.networking.hostName";
      description = "Node name shown in the cluster.";
    };

    clusterKeyFile = mkOption {
      type = types.path;
      example = "/run/keys/blixard-cluster.key";
      description = ''
        The cluster's pre-shared key (libp2p pnet format). Nodes without it cannot connect.
        A path read at run time: never put the key itself into the Nix store.
      '';
    };

    dataDir = mkOption {
      type = types.strMatching "/.+";
      default = "/var/lib/blixard";
      description = "Raft log, snapshots, state machine and rendered guest flakes.";
    };

    listenAddresses = mkOption {
      type = types.listOf types.str;
      default = [ "/ip4/0.0.0.0/tcp/7000" "/ip6/::/tcp/7000" ];
      description = "libp2p multiaddrs to listen on.";
    };

    bootstrapPeers = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "/ip4/10.0.0.1/tcp/7000/p2p/12D3KooW..." ];
      description = "Peers to dial at start, beyond mDNS discovery on the LAN.";
    };

    mdns = mkOption {
      type = types.bool;
      default = true;
      description = "Discover other nodes on the local network with mDNS.";
    };

    labels = mkOption {
      type = types.attrsOf types.str;
      default = { };
      example = { zone = "a"; arch = "x86_64"; };
      description = "Node labels for placement constraints.";
    };

    capacity = mkOption {
      description = "What this node offers to guests; null means detected at start.";
      default = { };
      type = types.submodule {
        options = {
          cpu = mkOption { type = types.nullOr types.ints.positive; default = null; description = "vCPUs."; };
          memoryMiB = mkOption { type = types.nullOr types.ints.positive; default = null; description = "MiB."; };
          diskGiB = mkOption { type = types.nullOr types.ints.unsigned; default = null; description = "GiB."; };
        };
      };
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open the TCP ports of listenAddresses (and UDP 5353 for mDNS).";
    };

    hypervisor = mkOption {
      type = types.enum [ "qemu" "cloud-hypervisor" "firecracker" ];
      default = "qemu";
      description = "Default VMM of guests rendered for microvm.nix when a VM does not choose one.";
    };

    guestFlakeInputs = {
      nixpkgs = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "path:/nix/store/…-source";
        description = ''
          Flake URL of nixpkgs for rendered guest flakes. The flake's nixosModules.blixard sets
          it to the host's own pinned nixpkgs, so guests build without fetching anything.
        '';
      };
      microvm = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "Flake URL of microvm.nix for rendered guest flakes (the host's own, from the flake).";
      };
    };

    bridges = mkOption {
      description = "Host bridges for guest TAPs, declared with systemd-networkd; the agent puts each TAP on its network's bridge.";
      default = { };
      example = { br0 = { interfaces = [ "enp1s0" ]; }; };
      type = types.attrsOf (types.submodule {
        options = {
          interfaces = mkOption {
            type = types.listOf types.str;
            default = [ ];
            description = "Uplinks enslaved to the bridge.";
          };
        };
      });
    };

    ceph = {
      monitors = mkOption {
        # POSIX bracket expression: `]` first, `-` last (IPv6 monitors are written [addr]:port)
        type = types.listOf (types.strMatching "[]A-Za-z0-9.:_[-]+");
        default = [ ];
        example = [ "10.0.0.1:6789" "10.0.0.2:6789" ];
        description = "Ceph monitor addresses; empty disables RBD volumes.";
      };
      pool = mkOption {
        type = types.strMatching "[A-Za-z0-9_.-]+";
        default = "rbd";
        description = "RBD pool for guest disks.";
      };
      user = mkOption {
        type = types.strMatching "[A-Za-z0-9_.-]+";
        default = "blixard";
        description = "cephx user (without `client.`).";
      };
      keyringFile = mkOption {
        type = types.nullOr types.path;
        default = null;
        description = ''
          Keyring of the cephx user. It must be readable by group kvm: QEMU opens
          the images with librbd inside microvm@ units, which run as microvm:kvm.
        '';
      };
    };

    extraSettings = mkOption {
      type = settingsFormat.type;
      default = { };
      example = { metrics = { listen = "127.0.0.1:9100"; }; };
      description = "Merged over the generated config.toml; node/config.ts (CONFIG_KEYS) lists the keys it accepts.";
    };
  };

  config = mkIf cfg.enable (mkMerge [
    {
      assertions = [
        {
          assertion = lib.hasPrefix "/" (toString cfg.clusterKeyFile);
          message = "services.blixard.clusterKeyFile must be an absolute path read at run time.";
        }
        # the daemon checks these at start too (node/config.ts); failing here fails the rebuild, not the boot
        {
          assertion = builtins.all (n: builtins.match "[A-Za-z0-9][A-Za-z0-9._/-]{0,127}" n != null) (builtins.attrNames cfg.labels);
          message = "services.blixard.labels: names must be 1-128 of letters, digits, . _ / - (starting with a letter or digit).";
        }
        {
          assertion = builtins.all (a: builtins.match ".*/p2p/.+" a != null) cfg.bootstrapPeers;
          message = "services.blixard.bootstrapPeers: every address needs a /p2p/<peer id> suffix.";
        }
      ];

      users.users.${user} = {
        isSystemUser = true;
        group = user;
        # kvm: /dev/kvm, and /var/lib/microvms, which microvm.nix makes group-writable for kvm
        extraGroups = [ "kvm" ];
        home = cfg.dataDir;
      };
      users.groups.${user} = { };

      environment.systemPackages = [ cfg.package ];
      environment.etc."blixard/config.toml".source = configFile;
      environment.etc."blixard/host.toml".source = hostFile;

      systemd.services.blixard = {
        description = "Blixard node";
        wantedBy = [ "multi-user.target" ];
        wants = [ "network-online.target" ];
        after = [ "network-online.target" ];
        # nix builds guests, systemctl drives microvm@, ip attaches TAPs, rbd maps volumes
        path = [ config.nix.package config.systemd.package pkgs.iproute2 ]
          ++ lib.optional (cfg.ceph.monitors != [ ]) pkgs.ceph-client;
        environment = {
          HOME = cfg.dataDir;
          XDG_CACHE_HOME = "${cfg.dataDir}/.cache";
          # A 4 MiB V8 young generation (default 16): idle RSS ~135 MiB instead of ~160, at a small
          # cost in write throughput (2 MiB: ~128 MiB, ~20% fewer writes/s; measured by bench:raft).
          NODE_OPTIONS = "--max-semi-space-size=4";
        };
        serviceConfig = {
          ExecStart = "${cfg.package}/bin/blixard-node --config ${configFile}";
          Restart = "on-failure";
          RestartSec = "2s";
          # Guests must outlive a daemon restart or stop. microvm.nix guests run in their own
          # microvm@ units, but QEMU guests the daemon starts itself (hypervisor "qemu") are its
          # children in this unit's cgroup: "mixed" or "control-group" would SIGKILL them on every
          # restart. "process" signals only the daemon, which re-adopts its guests when it starts.
          KillMode = "process";
          TimeoutStopSec = "30s";

          User = user;
          Group = user;
          DynamicUser = false;
          SupplementaryGroups = [ "kvm" ];
          StateDirectory = mkIf (cfg.dataDir == "/var/lib/blixard") "blixard";
          StateDirectoryMode = "0750";
          UMask = "0027";

          # TAPs onto bridges, VXLAN and VLAN devices: the only privilege it needs.
          AmbientCapabilities = [ "CAP_NET_ADMIN" ];
          CapabilityBoundingSet = [ "CAP_NET_ADMIN" ];
          NoNewPrivileges = true;

          ProtectSystem = "strict";
          ReadWritePaths = [ cfg.dataDir microvmStateDir ];
          ProtectHome = true;
          PrivateTmp = true;
          ProtectKernelModules = true;
          ProtectKernelLogs = true;
          ProtectControlGroups = true;
          ProtectClock = true;
          ProtectHostname = true;
          ProtectProc = "invisible";
          RestrictNamespaces = true;
          RestrictRealtime = true;
          RestrictSUIDSGID = true;
          LockPersonality = true;
          SystemCallArchitectures = "native";
          # unix: systemd, nix-daemon and QMP sockets; netlink: ip link
          RestrictAddressFamilies = [ "AF_UNIX" "AF_INET" "AF_INET6" "AF_NETLINK" ];
          DevicePolicy = "closed";
          DeviceAllow = [ "/dev/kvm rw" "/dev/net/tun rw" ];
          # V8 writes the code it compiles: MemoryDenyWriteExecute would kill node.
          MemoryDenyWriteExecute = false;
          LimitNOFILE = 65536;
        };
      };

      # The daemon runs as an unprivileged user: let it start and stop guest units, and nothing else.
      security.polkit.enable = true;
      security.polkit.extraConfig = ''
        polkit.addRule(function (action, subject) {
          if (action.id == "org.freedesktop.systemd1.manage-units" &&
              subject.user == "${user}" &&
              /^microvm@[a-z0-9-]+\.service$/.test(action.lookup("unit")) &&
              ["start", "stop", "restart", "reset-failed"].indexOf(action.lookup("verb")) >= 0) {
            return polkit.Result.YES;
          }
        });
      '';

      microvm.host.enable = mkDefault true;
      # The agent applies each VM's restart policy (always, on-failure, never) and reports
      # every exit: a unit restarting guests by itself would hide crashes from it.
      systemd.services."microvm@".serviceConfig.Restart = mkForce "no";
    }

    (mkIf (cfg.ceph.monitors != [ ]) {
      environment.etc."blixard/ceph.conf" = {
        source = cephConf;
        mode = "0644";
      };
    })

    (mkIf (cfg.bridges != { }) {
      systemd.network.enable = true;
      systemd.network.netdevs = lib.listToAttrs (map
        (name: lib.nameValuePair "40-blixard-${name}" {
          netdevConfig = { Kind = "bridge"; Name = name; };
        })
        bridgeNames);
      systemd.network.networks = lib.listToAttrs (lib.concatMap
        (name: [
          (lib.nameValuePair "40-blixard-${name}" {
            matchConfig.Name = name;
            # the bridge is up without an address of its own; add one with your own .network if needed
            networkConfig.ConfigureWithoutCarrier = true;
            linkConfig.RequiredForOnline = "no";
          })
        ] ++ lib.optional (cfg.bridges.${name}.interfaces != [ ])
          (lib.nameValuePair "41-blixard-${name}-uplinks" {
            matchConfig.Name = lib.concatStringsSep " " cfg.bridges.${name}.interfaces;
            networkConfig.Bridge = name;
          }))
        bridgeNames);
    })

    (mkIf cfg.openFirewall {
      networking.firewall.allowedTCPPorts = tcpPorts;
      networking.firewall.allowedUDPPorts = lib.optional cfg.mdns 5353;
    })
  ]);
}
