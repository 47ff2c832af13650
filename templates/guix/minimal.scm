;; dev-vm.scm (minimal): the smallest Guix System devvm can boot and reach,
;; with no extra packages. Written by `devvm init --template minimal'; yours
;; to edit. devvm adds its user, keys and shares at build time from the
;; Vmfile, and OpenSSH and networking since this file has neither.
(use-modules (gnu) (gnu system))

(operating-system
  (host-name {{scm .HostName}})
  (timezone "Etc/UTC")
  (bootloader (bootloader-configuration
               (bootloader grub-bootloader)
               (targets '("/dev/vda"))))
  (file-systems (cons (file-system
                        (mount-point "/")
                        (device "/dev/vda1")
                        (type "ext4"))
                      %base-file-systems)))
