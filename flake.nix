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
      systems = [ "x86_64-linux" "aarch64-linux" ];
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
        # guests are built from the same pinned sources as the host: no fetch, no drift
        services.blixard.guestFlakeInputs.nixpkgs = lib.mkDefault "path:${nixpkgs.outPath}";
        services.blixard.guestFlakeInputs.microvm = lib.mkDefault "path:${microvm.outPath}";
      };
      nixosModules.default = self.nixosModules.blixard;

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = [ pkgs.nodejs_20 pkgs.nix pkgs.qemu ];
        };
      });
    };
}
