# devvm test fixture (written for devvm, not copied from any project): the layout of a small microvm.nix
# infrastructure repository — four guests vm1..vm4 on their own subnets 10.N.0.0/24 (guest 10.N.0.2, tap
# interface vm-vmN), a shared base module, and the hypervisor that imports microvm.nixosModules.host and declares
# the guests in microvm.vms.
#
# It has no inputs, so `nix eval` works offline: instead of nixpkgs.lib.nixosSystem, each configuration is a plain
# attribute set with the same attribute paths a NixOS system has (`config.networking.hostName`,
# `config.microvm.declaredRunner` from nixos-modules/microvm/options.nix, `config.microvm.vms.<name>.{flake,
# updateFlake,config}` from nixos-modules/host/options.nix, `config.users.users.<name>.openssh.authorizedKeys.keys`,
# `config.systemd.network.networks.<name>.address`, `config.nixpkgs.hostPlatform.system`). devvm only reads these
# paths, so the fixture exercises its real `nix eval` expression on the real Nix evaluator.
{
  description = "devvm fixture: four microvm.nix guests and their hypervisor";

  outputs = { self }:
    let
      owner = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFixtureFixtureFixtureFixtureFixtureFixture00 alice@laptop";
      # Per-VM network: the index N gives 10.N.0.2 (the hypervisor's bridge br-vmN is 10.N.0.1).
      networks = { vm1 = 1; vm2 = 2; vm3 = 3; vm4 = 4; };
      base = name: index: {
        networking.hostName = name;
        nixpkgs.hostPlatform.system = "aarch64-linux";
        microvm = {
          hypervisor = "qemu";
          declaredRunner = "microvm-qemu-${name}"; # a derivation in NixOS; devvm never evaluates it
          interfaces = [{ type = "tap"; id = "vm-${name}"; mac = "02:00:00:00:00:0${toString index}"; }];
          forwardPorts = [ ];
        };
        systemd.network.networks."10-lan" = {
          matchConfig.Name = "eth0";
          address = [ "10.${toString index}.0.2/24" ];
          gateway = [ "10.${toString index}.0.1" ];
        };
        services.openssh = { enable = true; ports = [ 22 ]; };
        users.users = {
          root = { isNormalUser = false; openssh.authorizedKeys.keys = [ ]; };
          sshd = { isNormalUser = false; isSystemUser = true; };
          alice = { isNormalUser = true; extraGroups = [ "wheel" ]; openssh.authorizedKeys.keys = [ owner ]; };
        };
      };
      guests = builtins.mapAttrs (name: index: { config = base name index; }) networks;
    in
    {
      nixosConfigurations = guests // {
        hypervisor = {
          config = {
            networking.hostName = "hypervisor";
            nixpkgs.hostPlatform.system = "aarch64-linux";
            microvm.stateDir = "/var/lib/microvms";
            microvm.vms = builtins.mapAttrs (name: _: {
              flake = self;
              updateFlake = "git+file:///root/infra";
              config = null;
            }) networks // {
              # A fully declarative VM: no nixosConfigurations entry of its own.
              builder = {
                flake = null;
                updateFlake = null;
                config = { config = (base "builder" 9) // { users.users.root = { openssh.authorizedKeys.keys = [ owner ]; }; }; };
              };
            };
          };
        };
      };
    };
}
