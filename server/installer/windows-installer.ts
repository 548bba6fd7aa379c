/**
 * The Windows install script: PowerShell 5.1 or later, run as
 * Administrator. It downloads the agent executable from the agent port
 * over HTTPS, accepting only a chain that ends in the CA it carries,
 * refuses it unless Get-FileHash gives the embedded SHA-256, installs it to
 * Program Files, writes the configuration to ProgramData, enrolls and
 * registers a service (New-Service) with restart-on-failure recovery
 * actions (sc.exe failure). `-Uninstall` removes all of it. See
 * docs/install.md. (Tested for its content: no Windows here.)
 */
import { agentConfigJson } from './linux-installer.js';
import { checkInstallerValues, commentText, psQuote, type InstallerValues } from './script-values.js';

/** The service name the script registers. */
export const WINDOWS_SERVICE = 'RollcallAgent';

/** Renders the Windows installer for validated values. */
export function windowsInstaller(values: InstallerValues): string {
  const v = checkInstallerValues(values);
  const servers = v.servers.map((s) => psQuote(s)).join(', ');
  return `# Rollcall agent installer for Windows x64.
# Group: ${commentText(v.groupPath)}
# Server instance ${commentText(v.instanceId)}; made ${commentText(v.generatedAt)}.
# Usage (as Administrator): powershell -ExecutionPolicy Bypass -File rollcall-install.ps1 [-NoService] | -Uninstall
# It holds an enrollment token: keep it like a password and delete it after use.
[CmdletBinding()]
param([switch]$Uninstall, [switch]$NoService)
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3

$Servers = @(${servers})
$CaPin = ${psQuote(v.caPin)}
$EnrollToken = ${psQuote(v.token)}
$Proxy = ${psQuote(v.proxy ?? '')}
$AgentSha256 = ${psQuote(v.sha256.toUpperCase())}
$AgentPath = ${psQuote(v.downloadPath)}
$CaPem = ${psQuote(v.caPem.trimEnd(), { multiline: true })}
$AgentConfig = ${psQuote(agentConfigJson(v).trimEnd(), { multiline: true })}

$ServiceName = '${WINDOWS_SERVICE}'
$BinDir = Join-Path $env:ProgramFiles 'Rollcall Agent'
$Bin = Join-Path $BinDir 'rollcall-agent.exe'
$ConfDir = Join-Path $env:ProgramData 'Rollcall Agent'
$Conf = Join-Path $ConfDir 'agent.json'
$StateDir = Join-Path $ConfDir 'state'

function Fail([string]$Message, [int]$Code = 1) { Write-Error "rollcall-install: $Message" -ErrorAction Continue; exit $Code }

$principal = New-Object Security.Principal.WindowsPrincipal([Security.Principal.WindowsIdentity]::GetCurrent())
if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) { Fail 'run me as Administrator' 2 }

if ($Uninstall) {
  $svc = Get-Service -Name $ServiceName -ErrorAction SilentlyContinue
  if ($svc) {
    if ($svc.Status -ne 'Stopped') { Stop-Service -Name $ServiceName -Force }
    & sc.exe delete $ServiceName | Out-Null
  }
  Remove-Item -LiteralPath $BinDir -Recurse -Force -ErrorAction SilentlyContinue
  Remove-Item -LiteralPath $ConfDir -Recurse -Force -ErrorAction SilentlyContinue
  Write-Host "rollcall-install: removed the $ServiceName service, $BinDir and $ConfDir"
  exit 0
}

if (Test-Path -LiteralPath (Join-Path $StateDir 'identity.json')) { Fail "already installed ($StateDir holds an enrollment); run with -Uninstall first" 3 }

# Trust only a chain that ends in the embedded CA (the server's own), for this download only.
$caCert = New-Object System.Security.Cryptography.X509Certificates.X509Certificate2(,[Text.Encoding]::ASCII.GetBytes($CaPem))
[Net.ServicePointManager]::SecurityProtocol = [Net.SecurityProtocolType]::Tls12
[Net.ServicePointManager]::ServerCertificateValidationCallback = {
  param($sender, $cert, $chain, $errors)
  if ($errors -band [Net.Security.SslPolicyErrors]::RemoteCertificateNameMismatch) { return $false }
  $c = New-Object System.Security.Cryptography.X509Certificates.X509Chain
  $c.ChainPolicy.RevocationMode = 'NoCheck'
  $c.ChainPolicy.VerificationFlags = 'AllowUnknownCertificateAuthority'
  [void]$c.ChainPolicy.ExtraStore.Add($caCert)
  if (-not $c.Build([System.Security.Cryptography.X509Certificates.X509Certificate2]$cert)) { return $false }
  $root = $c.ChainElements[$c.ChainElements.Count - 1].Certificate
  return $root.Thumbprint -eq $caCert.Thumbprint
}

$work = Join-Path ([IO.Path]::GetTempPath()) ('rollcall-install-' + [guid]::NewGuid())
New-Item -ItemType Directory -Path $work | Out-Null
$download = Join-Path $work 'rollcall-agent.exe'
try {
  $fetched = $null
  foreach ($server in $Servers) {
    Write-Host "rollcall-install: downloading the agent from $server"
    $request = @{ Uri = "https://$server$AgentPath"; OutFile = $download; UseBasicParsing = $true; TimeoutSec = 120 }
    if ($Proxy) {
      $proxyUri = [Uri]$Proxy
      $request.Proxy = $proxyUri.GetLeftPart([UriPartial]::Authority)
      if ($proxyUri.UserInfo) {
        $user, $pass = $proxyUri.UserInfo -split ':', 2
        $secure = ConvertTo-SecureString ([Uri]::UnescapeDataString($pass)) -AsPlainText -Force
        $request.ProxyCredential = New-Object Management.Automation.PSCredential([Uri]::UnescapeDataString($user), $secure)
      }
    }
    try { Invoke-WebRequest @request; $fetched = $server; break } catch { Write-Host "rollcall-install: could not download from $server ($($_.Exception.Message))" }
  }
  if (-not $fetched) { Fail 'no server could be reached to download the agent; nothing was installed' 4 }
  $got = (Get-FileHash -LiteralPath $download -Algorithm SHA256).Hash
  if ($got -ne $AgentSha256) { Fail "the downloaded agent's SHA-256 is $got, not the expected $AgentSha256; refusing to install it (nothing was installed)" 5 }

  New-Item -ItemType Directory -Force -Path $BinDir, $ConfDir, $StateDir | Out-Null
  Copy-Item -LiteralPath $download -Destination $Bin -Force
  Set-Content -LiteralPath $Conf -Value $AgentConfig -Encoding ASCII
  & icacls.exe $ConfDir /inheritance:r /grant:r 'SYSTEM:(OI)(CI)F' 'Administrators:(OI)(CI)F' | Out-Null

  $env:ROLLCALL_AGENT_TOKEN = $EnrollToken
  # The server the download came from goes first (enrollment talks to the first); the rest keep their order.
  $enrollArgs = @('enroll', '--ca-pin', $CaPin, '--state-dir', $StateDir, '--config', $Conf, '--server', $fetched)
  foreach ($server in $Servers) { if ($server -ne $fetched) { $enrollArgs += @('--server', $server) } }
  & $Bin @enrollArgs
  $enrolled = $LASTEXITCODE
  Remove-Item Env:ROLLCALL_AGENT_TOKEN
  if ($enrolled -ne 0) {
    Remove-Item -LiteralPath $BinDir, $ConfDir -Recurse -Force -ErrorAction SilentlyContinue
    Fail "enrollment failed (exit $enrolled); nothing was left installed" 6
  }

  if ($NoService) { Write-Host 'rollcall-install: installed; service not registered'; exit 0 }
  $binaryPath = '"' + $Bin + '" run --state-dir "' + $StateDir + '" --config "' + $Conf + '"'
  New-Service -Name $ServiceName -BinaryPathName $binaryPath -DisplayName 'Rollcall Agent' -Description 'Connects this computer to its Rollcall server' -StartupType Automatic | Out-Null
  # Recovery: restart after 10 s, 30 s, then every 60 s; the failure count resets after a day.
  & sc.exe failure $ServiceName reset= 86400 actions= restart/10000/restart/30000/restart/60000 | Out-Null
  & sc.exe failureflag $ServiceName 1 | Out-Null
  Start-Service -Name $ServiceName
  Write-Host "rollcall-install: installed and started the $ServiceName service"
} finally {
  [Net.ServicePointManager]::ServerCertificateValidationCallback = $null
  Remove-Item -LiteralPath $work -Recurse -Force -ErrorAction SilentlyContinue
}
`;
}
