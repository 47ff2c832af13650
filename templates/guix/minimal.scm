;; dev-vm.scm (minimal): the smallest Guix System devvm can boot and reach:
;; networking, OpenSSH with devvm's keys, the shares, no extra packages.
;; Written by `devvm init --template minimal`; yours to edit.
(use-modules (gnu) (gnu system))
(use-service-modules networking ssh)

(operating-system
  (host-name {{scm .HostName}})
  (timezone "Etc/UTC")
  (bootloader (bootloader-configuration
               (bootloader grub-bootloader)
               (targets '("/dev/vda"))))
  (kernel-arguments (cons "console=ttyS0" %default-kernel-arguments))
  (file-systems (cons* (file-system
                         (mount-point "/")
                         (device "/dev/vda1")
                         (type "ext4"))
{{- range .Shares}}
                       (file-system
                         (mount-point {{scm .Guest}})
                         (device {{scm .Tag}})
                         (type "9p")
                         {{- if .ReadOnly}}
                         (flags '(read-only))
                         {{- end}}
                         (options "trans=virtio,version=9p2000.L,msize=104857600")
                         (check? #f)
                         (create-mount-point? #t)
                         (mount-may-fail? #t))
{{- end}}
                       %base-file-systems))
  (users (cons (user-account
                 (name {{scm .User}})
                 (uid {{.UID}})
                 (group "users")
                 (supplementary-groups '("wheel")))
               %base-user-accounts))
  (sudoers-file (plain-file "sudoers"
                            "root ALL=(ALL) ALL\n%wheel ALL=(ALL) NOPASSWD: ALL\n"))
  (services
   (cons* (service static-networking-service-type
                   (list %qemu-static-networking))
          (service openssh-service-type
                   (openssh-configuration
                    (permit-root-login #f)
                    (password-authentication? #f)
                    (authorized-keys
                     `((,{{scm .User}} ,(local-file {{scm .AuthorizedKeys}}
                                                   "devvm-authorized-keys"))))
                    ;; Drop an unresponsive client within a minute.
                    (extra-content "ClientAliveInterval 15\nClientAliveCountMax 4\n")))
          %base-services)))
