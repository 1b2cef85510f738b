{
  description = "Blixard: a NixOS-native cluster of identical nodes that runs microVMs";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.11";
    microvm = {
      url = "github:microvm-nix/microvm.nix";
      inputs.nixpkgs.follows = "nixpkgs";
    };
  };

  outputs = { self, nixpkgs, microvm }:
    let
      # x86_64 only: the daemon runs qemu-system-x86_64 -M microvm; other architectures come with a driver for them
      systems = [ "x86_64-linux" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (pkgs: {
        blixard = pkgs.callPackage ./nixos/package.nix { };
        default = self.packages.${pkgs.stdenv.hostPlatform.system}.blixard;
      });

      # services.blixard, with microvm.nix's host module and our package as the default.
      nixosModules.blixard = { lib, pkgs, ... }: {
        imports = [ microvm.nixosModules.host ./nixos/module.nix ];
        services.blixard.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.blixard;
      };
      nixosModules.default = self.nixosModules.blixard;

      # A three-node NixOS VM test (nixos/tests/cluster.nix): `nix flake check` or
      # `nix build .#checks.x86_64-linux.cluster -L`, on a machine with Nix, KVM and network.
      checks = forAllSystems (pkgs: {
        cluster = pkgs.testers.runNixOSTest (import ./nixos/tests/cluster.nix { inherit self; });
      });

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = [ pkgs.nodejs_20 pkgs.nix pkgs.qemu ];
        };
      });
    };
}
