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
  # where systemd puts LoadCredential= files for the blixard unit (systemd.exec(5), $CREDENTIALS_DIRECTORY)
  credentialsDir = "/run/credentials/blixard.service";
  isStorePath = p: lib.hasPrefix "${builtins.storeDir}/" p;
  # a node name is a DNS label; hostnames may have capitals and `_` (networking.hostName allows both)
  nameRegex = "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?";
  defaultDataDir = "/var/lib/blixard";
  # the daemon's node threads plus every QEMU child it starts (one thread per vCPU, I/O threads)
  tasksMax = 16384;
  networkd = config.networking.useNetworkd or false || config.systemd.network.enable or false;
  fw = config.networking.firewall;
  # uplinks the host already gives an address: enslaving them to a bridge moves that job to the bridge
  addressedUplinks = lib.concatMap (b: builtins.filter (i:
      let c = config.networking.interfaces.${i} or { }; in
      (c.ipv4.addresses or [ ]) != [ ] || (c.ipv6.addresses or [ ]) != [ ] || (c.useDHCP or null) == true)
    cfg.bridges.${b}.interfaces) bridgeNames;

  # TOML has no null: unset optional values are left out, node/config.ts applies its defaults.
  dropNulls = lib.filterAttrs (_: v: v != null);

  # config.toml: exactly the keys node/config.ts reads (it refuses unknown ones); settings
  # (metricsPort, raft.*, logLevel, …) wins on any key.
  bridgeNames = builtins.attrNames cfg.bridges;
  settings = lib.recursiveUpdate
    ({
      name = cfg.name;
      dataDir = cfg.dataDir;
      listen = cfg.listenAddresses;
      # systemd copies the key there (LoadCredential) readable by the service only; the
      # operator's file stays root-only wherever it is, and never enters the store.
      clusterKeyFile = "${credentialsDir}/cluster-key";
      # nixpkgs' default QEMU has no librbd: the driver runs the Ceph-enabled one given here
      qemuBinary = "${cfg.qemuPackage}/bin/qemu-system-x86_64";
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
      } // lib.optionalAttrs (cfg.ceph.keyringFile != null) { keyring = "${credentialsDir}/ceph-keyring"; };
    })
    cfg.settings;

  configFile = settingsFormat.generate "blixard.toml" settings;

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

in
{
  options.services.blixard = {
    enable = mkEnableOption "the Blixard node daemon (blixard-node)";

    package = mkOption {
      type = types.package;
      defaultText = literalExpression "blixard.packages.\${system}.blixard";
      description = "The Blixard package (blixard-node and the blixard CLI).";
    };

    qemuPackage = mkOption {
      type = types.package;
      default = pkgs.qemu_kvm.override { cephSupport = true; };
      defaultText = literalExpression "pkgs.qemu_kvm.override { cephSupport = true; }";
      description = ''
        QEMU for guests, on the unit's PATH and given to the daemon as `qemuBinary`. nixpkgs builds
        QEMU without librbd (`cephSupport ? false`): RBD volumes (`-drive file=rbd:`) need this one.
      '';
    };

    extraPackages = mkOption {
      type = types.listOf types.package;
      default = [ ];
      example = literalExpression "[ pkgs.cloud-hypervisor ]";
      description = "More programs on the daemon's PATH.";
    };

    name = mkOption {
      type = types.str;
      default = lib.toLower (builtins.replaceStrings [ "_" ] [ "-" ] config.networking.hostName);
      defaultText = literalExpression ''lib.toLower (builtins.replaceStrings [ "_" ] [ "-" ] config.networking.hostName)'';
      description = "Node name shown in the cluster: a DNS label (a-z, 0-9, -), by default the host name in lower case.";
    };

    clusterKeyFile = mkOption {
      type = types.strMatching "/.+";
      example = "/etc/blixard/cluster.key";
      description = ''
        Absolute path, as a string, of the cluster's pre-shared key (libp2p pnet format), owned
        by root with mode 0400 (agenix/sops-nix paths work). systemd reads it as root and hands
        the service a private copy (LoadCredential), so the service user needs no access to it.
        A string, never a Nix path: `./key` would copy the key into the world-readable store.
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
      description = "Open the TCP ports of listenAddresses, the live-migration port range (settings.migration.portLow..portHigh, default 7400-7499), UDP 4789 for VXLAN networks, and UDP 5353 when mDNS is on.";
    };

    bridges = mkOption {
      description = ''
        Host bridges for guest TAPs; the agent puts each TAP on its network's bridge. Declared with the
        host's own networking: systemd-networkd netdevs when networkd is on, `networking.bridges` otherwise.
        An enslaved uplink's address must move to the bridge (a warning says so).
      '';
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
        type = types.nullOr (types.strMatching "/.+");
        default = null;
        description = ''
          Keyring of the cephx user. It must be readable by group kvm: QEMU opens
          the images with librbd inside microvm@ units, which run as microvm:kvm.
        '';
      };
    };

    # RFC 42: one freeform TOML option; the keys most hosts touch are typed (and documented) inside it
    settings = mkOption {
      default = { };
      example = { metricsPort = 9100; raft.tickMs = 50; };
      description = ''
        config.toml of the daemon, merged over what the options above generate (it wins on any key).
        node/config.ts (CONFIG_KEYS, `blixard-node --help`) lists the keys it accepts and refuses others.
      '';
      type = types.submodule {
        freeformType = settingsFormat.type;
        options = {
          logLevel = mkOption { type = types.enum [ "debug" "info" "warn" "error" ]; default = "info"; description = "Daemon log level."; };
          metricsPort = mkOption { type = types.port; default = 9630; description = "Prometheus /metrics port."; };
          bootstrapExpect = mkOption { type = types.ints.positive; default = 3; description = "Nodes a fresh cluster waits for before forming (1-7)."; };
        };
      };
    };
  };

  config = mkIf cfg.enable (mkMerge [
    {
      assertions = [
        {
          assertion = !isStorePath cfg.clusterKeyFile;
          message = "services.blixard.clusterKeyFile = \"${cfg.clusterKeyFile}\" is in the Nix store, readable by every user: give the path of a root-only file outside it, as a string.";
        }
        {
          assertion = cfg.ceph.keyringFile == null || !isStorePath cfg.ceph.keyringFile;
          message = "services.blixard.ceph.keyringFile is in the Nix store, readable by every user: give the path of a file outside it, as a string.";
        }
        {
          assertion = builtins.match nameRegex cfg.name != null;
          message = "services.blixard.name = \"${cfg.name}\" is not a valid node name: 1-63 of a-z, 0-9 and -, not starting or ending with - (set services.blixard.name when the host name does not fit).";
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

      warnings =
        lib.optional (cfg.mdns && (fw.enable or true) && !cfg.openFirewall && !(builtins.elem 5353 (fw.allowedUDPPorts or [ ])))
          "services.blixard: mDNS discovery is on but the firewall blocks UDP 5353, so nodes will not find each other on the LAN: set services.blixard.openFirewall, open the port, or set services.blixard.mdns = false and use bootstrapPeers."
        ++ map (i: "services.blixard.bridges: ${i} is enslaved to a bridge but has its own address configuration; a bridge port loses its address, configure it on the bridge instead.") addressedUplinks;

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

      systemd.services.blixard = {
        description = "Blixard node";
        wantedBy = [ "multi-user.target" ];
        wants = [ "network-online.target" ];
        after = [ "network-online.target" ];
        # nix builds guests, systemctl drives microvm@, ip attaches TAPs, rbd maps volumes
        # qemu: guests and the KVM probe (the daemon runs the absolute qemuBinary; PATH is for tools)
        # util-linux: setpriv, so that the KVM probe's test guest dies with the daemon
        path = [ config.nix.package config.systemd.package pkgs.iproute2 cfg.qemuPackage pkgs.util-linux ]
          ++ lib.optional (cfg.ceph.monitors != [ ]) pkgs.ceph-client
          ++ cfg.extraPackages;
        # a crash loop stops after 5 starts in 5 minutes instead of restarting forever
        startLimitBurst = 5;
        startLimitIntervalSec = 300;
        environment = {
          HOME = cfg.dataDir;
          XDG_CACHE_HOME = "${cfg.dataDir}/.cache";
          # What bounds the daemon's idle RSS (bench:idle; why each: DAEMON_NODE_FLAGS and DAEMON_ENV
          # in scripts/local-cluster.ts, the same flags as bin/blixard-node.js's shebang): V8's 16 MiB
          # young generation bound (the daemon gives back what load grew once idle: node/memory-trim.ts),
          # one V8 worker thread (default 4), and glibc's heap trim threshold fixed at its initial
          # 128 KiB (it otherwise grows to 32 MiB and keeps freed heap).
          NODE_OPTIONS = "--max-semi-space-size=16 --v8-pool-size=1";
          MALLOC_TRIM_THRESHOLD_ = "131072";
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
          # A hung daemon (its event loop stuck) is killed and restarted: it pings every
          # WatchdogSec/2 (node/ha/systemd-watchdog.ts, through systemd-notify, hence NotifyAccess).
          # Its guests do not wait for that: the fence watchdog stops them when the lease runs out.
          WatchdogSec = "20s";
          NotifyAccess = "all";

          User = user;
          Group = user;
          DynamicUser = false;
          SupplementaryGroups = [ "kvm" ];
          StateDirectory = mkIf (cfg.dataDir == defaultDataDir) "blixard";
          StateDirectoryMode = "0750";
          UMask = "0027";

          # TAPs onto bridges, VXLAN and VLAN devices: the only privilege it needs.
          AmbientCapabilities = [ "CAP_NET_ADMIN" ];
          CapabilityBoundingSet = [ "CAP_NET_ADMIN" ];
          NoNewPrivileges = true;

          ProtectSystem = "strict";
          # a missing ReadWritePaths entry fails the unit (226/NAMESPACE): a custom dataDir is made by
          # tmpfiles below; microvm.nix makes its state dir, "-" tolerates a host without it
          ReadWritePaths = [ cfg.dataDir "-${microvmStateDir}" ];
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
          TasksMax = tasksMax;
          LoadCredential = [ "cluster-key:${cfg.clusterKeyFile}" ]
            ++ lib.optional (cfg.ceph.keyringFile != null) "ceph-keyring:${cfg.ceph.keyringFile}";
        };
      };

      # The daemon runs as an unprivileged user: let it start and stop guest units, and nothing else
      # (`kill`: its fence SIGKILLs a guest whose stop outlasts the fence budget, node/ha/microvm-fence.ts).
      security.polkit.enable = true;
      security.polkit.extraConfig = ''
        polkit.addRule(function (action, subject) {
          if (action.id == "org.freedesktop.systemd1.manage-units" &&
              subject.user == "${user}" &&
              /^microvm@[a-z0-9-]+\.service$/.test(action.lookup("unit")) &&
              ["start", "stop", "restart", "reset-failed", "kill"].indexOf(action.lookup("verb")) >= 0) {
            return polkit.Result.YES;
          }
        });
      '';

      microvm.host.enable = mkDefault true;
      # The agent applies each VM's restart policy (always, on-failure, never) and reports
      # every exit: a unit restarting guests by itself would hide crashes from it.
      systemd.services."microvm@".serviceConfig.Restart = mkForce "no";
    }

    (mkIf (cfg.dataDir != defaultDataDir) {
      systemd.tmpfiles.rules = [ "d ${cfg.dataDir} 0750 ${user} ${user} - -" ];
    })

    (mkIf (cfg.ceph.monitors != [ ]) {
      environment.etc."blixard/ceph.conf" = {
        source = cephConf;
        mode = "0644";
      };
    })

    # scripted networking: the host's own bridge declarations; systemd-networkd is never switched on here
    (mkIf (cfg.bridges != { } && !networkd) {
      networking.bridges = lib.mapAttrs (_: b: { inherit (b) interfaces; }) cfg.bridges;
    })

    (mkIf (cfg.bridges != { } && networkd) {
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
      # live migration: the target's QEMU listens on one port of this range for each move (QEMU's
      # TLS with a per-migration key; node/migration/tls.ts), defaults as node/config.ts MIGRATION_PORTS
      networking.firewall.allowedTCPPortRanges = [{
        from = settings.migration.portLow or 7400;
        to = settings.migration.portHigh or 7499;
      }];
      # VXLAN networks between nodes (node/net-host/names.ts VXLAN_PORT), mDNS discovery
      networking.firewall.allowedUDPPorts = [ 4789 ] ++ lib.optional cfg.mdns 5353;
    })
  ]);
}
